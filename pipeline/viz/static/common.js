"use strict";
// Shared by probe3r's pages: read the embedded JSON, inflate arrays, show the run's identity.
// Arrays arrive as {dtype, shape, b64}: base64 of gzip-compressed little-endian bytes
// (pipeline/viz/pack.py), inflated with the browser's own DecompressionStream (no library).

const TYPED = { uint8: Uint8Array, uint16: Uint16Array, float32: Float32Array };

function pageData() {
  return JSON.parse(document.getElementById("data").textContent);
}

async function decodeArray(entry) {
  const bin = atob(entry.b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const buffer = await new Response(stream).arrayBuffer();
  return new TYPED[entry.dtype](buffer);
}

function showIdentity(el, identity) {
  for (const [key, value] of Object.entries(identity || {})) {
    const line = document.createElement("div");
    line.textContent = key + ": " + value;
    if (String(value).startsWith("random-init")) {
      line.className = "warn";
      line.textContent += "  (random weights: the pictures show an untrained model)";
    }
    el.appendChild(line);
  }
}

// Perceptual colour map (viridis, 5 stops, linear in between) for attention heat maps.
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}
