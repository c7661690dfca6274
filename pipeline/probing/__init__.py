"""Named locations in DUSt3R, activation capture and interventions on a live forward pass."""
