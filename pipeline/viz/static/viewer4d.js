"use strict";
// 4D pointmap viewer: canvas-2D splatting with a z-buffer (no WebGL, so it runs anywhere,
// headless and GPU-less included). Points are in view 1's camera frame, OpenCV axes
// (x right, y down, z forward); the orbit camera starts behind view 1 looking along +z.

const VIEW_RGB = [[79, 195, 247], [255, 183, 77]];
const GT_RGB = [200, 200, 200];
const BACKGROUND = [16, 20, 24];

async function viewer4d() {
  const d = pageData();
  showIdentity(document.getElementById("identity"), d.identity);
  document.getElementById("img1").src = d.images[0];
  document.getElementById("img2").src = d.images[1];
  const [F, V, M] = d.points.q.shape;
  const q = await decodeArray(d.points.q);
  const ok = await decodeArray(d.points.ok);
  const rgb = await decodeArray(d.rgb);
  const conf = d.conf ? await decodeArray(d.conf) : null;
  const pos = new Float32Array(q.length);
  for (let f = 0; f < F; f++) {
    const lo = d.points.lo[f], hi = d.points.hi[f];
    for (let i = f * V * M; i < (f + 1) * V * M; i++) {
      for (let a = 0; a < 3; a++) pos[3 * i + a] = lo[a] + (q[3 * i + a] / 65535) * (hi[a] - lo[a]);
    }
  }
  const canvas = document.getElementById("view");
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(canvas.width, canvas.height);
  const zbuf = new Float32Array(canvas.width * canvas.height);
  const el = (id) => document.getElementById(id);
  const slider = el("frame");
  slider.max = String(F - 1);
  const centreFrame = d.gt_index !== null ? d.gt_index : F - 1;
  const state = { yaw: 0.3, pitch: -0.25, dist: 2.2, target: centroid(centreFrame), frame: 0, timer: null };

  function centroid(f) {
    const c = [0, 0, 0];
    let n = 0;
    for (let i = f * V * M; i < (f + 1) * V * M; i++) {
      if (!ok[i]) continue;
      for (let a = 0; a < 3; a++) c[a] += pos[3 * i + a];
      n++;
    }
    return n ? c.map((x) => x / n) : [0, 0, 1];
  }

  function rotation() {
    const cy = Math.cos(state.yaw), sy = Math.sin(state.yaw);
    const cp = Math.cos(state.pitch), sp = Math.sin(state.pitch);
    // R = Rx(pitch) · Ry(yaw), rows are the orbit camera's axes in view 1's frame
    return [[cy, 0, sy], [sp * sy, cp, -sp * cy], [-cp * sy, sp, cp * cy]];
  }

  function projector() {
    const R = rotation(), t = state.target, W = canvas.width, H = canvas.height, f = 0.9 * H;
    return (x, y, z) => {
      const dx = x - t[0], dy = y - t[1], dz = z - t[2];
      const Z = R[2][0] * dx + R[2][1] * dy + R[2][2] * dz + state.dist;
      if (Z < 0.02) return null;
      const X = R[0][0] * dx + R[0][1] * dy + R[0][2] * dz;
      const Y = R[1][0] * dx + R[1][1] * dy + R[1][2] * dz;
      return [W / 2 + (f * X) / Z, H / 2 + (f * Y) / Z, Z];
    };
  }

  function splat(f, project, colourOf) {
    const W = canvas.width, H = canvas.height, s = Number(el("size").value);
    const minRank = (Number(el("conf").value) * 255) / 100;
    const px = image.data;
    for (let v = 0; v < V; v++) {
      if (!el("show" + (v + 1)).checked) continue;
      for (let m = 0; m < M; m++) {
        const i = (f * V + v) * M + m;
        if (!ok[i] || (conf && conf[i] < minRank)) continue;
        const p = project(pos[3 * i], pos[3 * i + 1], pos[3 * i + 2]);
        if (!p) continue;
        const x0 = Math.round(p[0] - s / 2), y0 = Math.round(p[1] - s / 2);
        const c = colourOf(v, m);
        for (let y = Math.max(y0, 0); y < Math.min(y0 + s, H); y++) {
          for (let x = Math.max(x0, 0); x < Math.min(x0 + s, W); x++) {
            const k = y * W + x;
            if (p[2] >= zbuf[k]) continue;
            zbuf[k] = p[2];
            px[4 * k] = c[0];
            px[4 * k + 1] = c[1];
            px[4 * k + 2] = c[2];
          }
        }
      }
    }
  }

  function draw() {
    const px = image.data;
    for (let k = 0; k < zbuf.length; k++) {
      px[4 * k] = BACKGROUND[0];
      px[4 * k + 1] = BACKGROUND[1];
      px[4 * k + 2] = BACKGROUND[2];
      px[4 * k + 3] = 255;
    }
    zbuf.fill(Infinity);
    const project = projector();
    const byImage = el("colour").value === "image";
    const colourOf = (v, m) => (byImage ? rgb.subarray(3 * (v * M + m), 3 * (v * M + m) + 3) : VIEW_RGB[v]);
    splat(state.frame, project, colourOf);
    if (el("overlay").checked && d.gt_index !== null && state.frame !== d.gt_index) {
      splat(d.gt_index, project, () => GT_RGB);
    }
    ctx.putImageData(image, 0, 0);
    if (el("frusta").checked) drawFrusta(project);
    ctx.fillStyle = "#eceff1";
    ctx.font = "15px monospace";
    ctx.fillText(d.names[state.frame], 10, 22);
    el("frame-name").textContent = `${d.names[state.frame]}  (${state.frame + 1}/${F})`;
    el("conf-value").textContent = el("conf").value + "%";
  }

  function drawFrusta(project) {
    d.frusta.forEach((segments, v) => {
      ctx.strokeStyle = `rgb(${VIEW_RGB[v].join(",")})`;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      for (const [a, b] of segments) {
        const pa = project(a[0], a[1], a[2]), pb = project(b[0], b[1], b[2]);
        if (!pa || !pb) continue;
        ctx.moveTo(pa[0], pa[1]);
        ctx.lineTo(pb[0], pb[1]);
      }
      ctx.stroke();
    });
  }

  function show(f) {
    state.frame = ((f % F) + F) % F;
    slider.value = String(state.frame);
    draw();
  }

  function togglePlay() {
    if (state.timer) {
      clearInterval(state.timer);
      state.timer = null;
      el("play").textContent = "▶ play";
    } else {
      state.timer = setInterval(() => show(state.frame + 1), 450);
      el("play").textContent = "❚❚ pause";
    }
  }

  slider.addEventListener("input", () => show(Number(slider.value)));
  el("play").addEventListener("click", togglePlay);
  for (const id of ["colour", "show1", "show2", "overlay", "frusta", "conf", "size"]) {
    el(id).addEventListener("input", draw);
  }
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, pan: e.shiftKey };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointerup", () => (drag = null));
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX;
    drag.y = e.clientY;
    if (drag.pan) {
      const R = rotation(), k = state.dist / (0.9 * canvas.height);
      for (let a = 0; a < 3; a++) state.target[a] -= k * (R[0][a] * dx + R[1][a] * dy);
    } else {
      state.yaw += dx * 0.01;
      state.pitch = Math.max(-1.5, Math.min(1.5, state.pitch - dy * 0.01));
    }
    draw();
  });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    state.dist = Math.max(0.05, state.dist * Math.exp(e.deltaY * 0.001));
    draw();
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight") show(state.frame + 1);
    else if (e.key === "ArrowLeft") show(state.frame - 1);
    else if (e.key === " ") {
      e.preventDefault();
      togglePlay();
    }
  });
  show(0);
  document.body.dataset.ready = "1";
}

viewer4d();
