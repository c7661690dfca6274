"""probe3r's command line: one sub-command per pipeline stage.

Each stage lives in `stages/<name>.py` as a thin command that parses options and calls
`pipeline`. Errors raised on purpose (`Probe3rError`) are printed as one red line and exit
with code 1; `--verbose` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from pipeline.errors import Probe3rError
from stages import correspond as correspond_stage
from stages import evaluate as evaluate_stage
from stages import extract as extract_stage
from stages import intervene as intervene_stage
from stages import render as render_stage
from stages import report as report_stage
from stages import store as store_stage
from stages import train_probes as train_probes_stage
from stages import viz as viz_stage

app = typer.Typer(
    name="probe3r",
    help="See inside multi-view transformers: render pairs, extract features, probe, evaluate, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command(name="render")(render_stage.render)
app.command(name="extract")(extract_stage.extract)
app.command(name="correspond")(correspond_stage.correspond)
app.command(name="train-probes")(train_probes_stage.train_probes)
app.command(name="evaluate")(evaluate_stage.evaluate)
app.command(name="intervene")(intervene_stage.intervene)
app.command(name="report")(report_stage.report)
app.command(name="viz")(viz_stage.viz)
app.add_typer(store_stage.app, name="store")

_state = {"verbose": False}


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs and full tracebacks."),
) -> None:
    _state["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    """Console-script entry point: run the app, turning project errors into one line."""
    try:
        app(standalone_mode=False)
    except Probe3rError as err:
        if _state["verbose"]:
            raise
        Console(stderr=True).print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Exit as ex:
        sys.exit(ex.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        Console(stderr=True).print("[yellow]aborted[/yellow]")
        sys.exit(130)
    except Exception as err:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
