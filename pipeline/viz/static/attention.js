"use strict";
// Attention viewer: rows = blocks, columns = heads, for the clicked query patch of view 2.
// Codes are uint8 with each attention row's maximum at 255 (pipeline/viz/attention_viewer.py).

const CELL = 64;

async function loadImage(el, src) {
  el.src = src;
  await el.decode();
  return el;
}

function greyCanvas(img) {
  const c = document.createElement("canvas");
  c.width = c.height = CELL;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0, CELL, CELL);
  const px = g.getImageData(0, 0, CELL, CELL);
  for (let i = 0; i < px.data.length; i += 4) {
    const y = 0.299 * px.data[i] + 0.587 * px.data[i + 1] + 0.114 * px.data[i + 2];
    px.data[i] = px.data[i + 1] = px.data[i + 2] = y;
  }
  g.putImageData(px, 0, 0);
  return c;
}

async function attentionViewer() {
  const d = pageData();
  showIdentity(document.getElementById("identity"), d.identity);
  const [h, w] = d.grid, N = h * w, A = d.heads;
  const codes = await decodeArray(d.attn);
  await loadImage(document.getElementById("query-img"), d.images[1]);
  const keys = [
    greyCanvas(await loadImage(document.getElementById("key1"), d.images[0])),
    greyCanvas(await loadImage(document.getElementById("key2"), d.images[1])),
  ];
  const kind = document.getElementById("kind");
  if (!d.kinds.includes("cross")) kind.value = "self";
  const grid = document.getElementById("cells");
  const mark = document.getElementById("query-mark");
  let query = d.query;
  let cells = [];

  function build() {
    grid.innerHTML = "";
    grid.style.gridTemplateColumns = `5em repeat(${A}, ${CELL}px)`;
    grid.appendChild(document.createElement("div"));
    for (let a = 0; a < A; a++) {
      const lab = document.createElement("div");
      lab.className = "lab";
      lab.textContent = "head " + a;
      grid.appendChild(lab);
    }
    cells = [];
    d.names.forEach((name, l) => {
      if (d.kinds[l] !== kind.value) return;
      const lab = document.createElement("div");
      lab.className = "lab";
      lab.textContent = name;
      grid.appendChild(lab);
      for (let a = 0; a < A; a++) {
        const c = document.createElement("canvas");
        c.width = c.height = CELL;
        c.title = `${name} head ${a}`;
        grid.appendChild(c);
        cells.push({ canvas: c, l, a });
      }
    });
  }

  function draw() {
    const key = kind.value === "cross" ? keys[0] : keys[1];
    const pw = CELL / w, ph = CELL / h;
    for (const { canvas, l, a } of cells) {
      const g = canvas.getContext("2d");
      g.drawImage(key, 0, 0);
      const base = ((l * A + a) * N + query) * N;
      for (let k = 0; k < N; k++) {
        const v = codes[base + k] / 255;
        const [r, gg, b] = viridis(v);
        g.fillStyle = `rgba(${r},${gg},${b},${0.1 + 0.8 * v})`;
        g.fillRect((k % w) * pw, Math.floor(k / w) * ph, Math.ceil(pw), Math.ceil(ph));
      }
    }
    const m = mark.getContext("2d"), sx = mark.width / w, sy = mark.height / h;
    m.clearRect(0, 0, mark.width, mark.height);
    m.strokeStyle = "red";
    m.lineWidth = 3;
    m.strokeRect((query % w) * sx, Math.floor(query / w) * sy, sx, sy);
    document.getElementById("query-name").textContent =
      `query patch ${query} (row ${Math.floor(query / w)}, col ${query % w})`;
  }

  mark.addEventListener("click", (e) => {
    const r = mark.getBoundingClientRect();
    const col = Math.min(w - 1, Math.floor(((e.clientX - r.left) / r.width) * w));
    const row = Math.min(h - 1, Math.floor(((e.clientY - r.top) / r.height) * h));
    query = row * w + col;
    draw();
  });
  kind.addEventListener("input", () => {
    build();
    draw();
  });
  build();
  draw();
  document.body.dataset.ready = "1";
}

attentionViewer();
