// hpcjobs view: the page. Plain JavaScript, no libraries: every view draws on a canvas and
// asks the server for what it shows (tiles, series windows, scatter images) as it zooms.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const CMAPS = ["viridis", "inferno", "fire", "blues", "gray"];
// what the page asked for, for people and for the browser test
window.hpcjobsStats = { tiles: 0, windows: 0, scatter: 0, errors: 0 };

function api(path, params) {
  const q = new URLSearchParams(params || {});
  q.set("token", TOKEN);
  return `/api/${path}?${q}`;
}

async function getJSON(path, params) {
  const r = await fetch(api(path, params), { credentials: "same-origin" });
  if (!r.ok) { window.hpcjobsStats.errors++; throw new Error(`${path}: ${r.status} ${await r.text()}`); }
  return r.json();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return v.toLocaleString("en");
  const a = Math.abs(v);
  return (a !== 0 && (a < 1e-3 || a >= 1e6)) ? v.toExponential(3) : v.toPrecision(4).replace(/\.?0+$/, "");
}

// nice tick positions between lo and hi
function ticks(lo, hi, n) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= step0);
  const out = [];
  for (let i = Math.ceil(lo / step); i * step <= hi + 1e-9 * span; i++) out.push(i === 0 ? 0 : i * step);
  return out;
}

// wheel zoom and drag pan on a canvas: onZoom(factor, px, py), onPan(dx, dy), onEnd()
function interact(canvas, onZoom, onPan, onReset) {
  canvas.addEventListener("wheel", ev => {
    ev.preventDefault();
    const r = canvas.getBoundingClientRect();
    onZoom(Math.pow(1.0015, -ev.deltaY), ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });
  let last = null;
  canvas.addEventListener("mousedown", ev => { last = [ev.clientX, ev.clientY]; canvas.classList.add("dragging"); });
  window.addEventListener("mousemove", ev => {
    if (!last) return;
    onPan(ev.clientX - last[0], ev.clientY - last[1]);
    last = [ev.clientX, ev.clientY];
  });
  window.addEventListener("mouseup", () => { last = null; canvas.classList.remove("dragging"); });
  canvas.addEventListener("dblclick", () => onReset());
}

// ------------------------------------------------------------------------------- maps
class MapView {
  constructor(root, step, view) {
    this.step = step; this.v = view;
    this.W = view.base_shape[1]; this.H = view.base_shape[0];
    this.how = view.how; this.cmap = view.cmap;
    this.tiles = new Map();
    this.canvas = el("canvas", { width: 760, height: 500, "data-view": "map", "data-step": step });
    const how = el("select", {}, ...["eq_hist", "linear", "log"].map(h => el("option", { value: h, text: h })));
    how.value = this.how;
    how.onchange = () => { this.how = how.value; this.draw(); };
    const cmap = el("select", {}, ...CMAPS.map(c => el("option", { value: c, text: c })));
    cmap.value = this.cmap;
    cmap.onchange = () => { this.cmap = cmap.value; this.draw(); };
    const zin = el("button", { text: "+" }), zout = el("button", { text: "\u2212" }), fit = el("button", { text: "fit" });
    zin.onclick = () => this.zoom(2, 380, 250); zout.onclick = () => this.zoom(0.5, 380, 250); fit.onclick = () => this.fit();
    this.info = el("div", { class: "info" });
    root.append(el("div", { class: "controls" }, "shading ", how, " colours ", cmap, " ", zin, zout, fit,
      el("span", { text: ` ${this.H} x ${this.W} base pixels, ${view.levels.length} stored level(s)` })),
    this.canvas, this.info);
    interact(this.canvas, (f, x, y) => this.zoom(f, x, y),
      (dx, dy) => { this.cu -= dx / this.s; this.cv += dy / this.s; this.draw(); }, () => this.fit());
    this.canvas.addEventListener("mousemove", ev => this.readout(ev));
    this.fit();
  }
  get margin() { return { l: 60, b: 28 }; }
  fit() {
    const w = this.canvas.width - this.margin.l, h = this.canvas.height - this.margin.b;
    this.s = Math.min(w / this.W, h / this.H);
    this.cu = this.W / 2; this.cv = this.H / 2;
    this.draw();
  }
  zoom(f, px, py) {
    const [u, v] = this.toBase(px, py);
    const top = Math.pow(2, this.v.top_zoom - this.v.max_zoom);
    this.s = Math.min(Math.max(this.s * f, 256 / Math.max(this.W, this.H) / 4), top);
    const [u2, v2] = this.toBase(px, py);
    this.cu += u - u2; this.cv += v - v2;
    this.draw();
  }
  toBase(px, py) {  // screen pixel -> base pixel (u right, v up)
    const m = this.margin, w = this.canvas.width - m.l, h = this.canvas.height - m.b;
    return [this.cu + (px - m.l - w / 2) / this.s, this.cv - (py - h / 2) / this.s];
  }
  toScreen(u, v) {
    const m = this.margin, w = this.canvas.width - m.l, h = this.canvas.height - m.b;
    return [m.l + w / 2 + (u - this.cu) * this.s, h / 2 - (v - this.cv) * this.s];
  }
  dataOf(u, v) {
    const e = this.v.extent;
    if (!e) return [u, v];
    return [e[0][0] + u / this.W * (e[0][1] - e[0][0]), e[1][0] + v / this.H * (e[1][1] - e[1][0])];
  }
  baseOf(x, y) {
    const e = this.v.extent;
    if (!e) return [x, y];
    return [(x - e[0][0]) / (e[0][1] - e[0][0]) * this.W, (y - e[1][0]) / (e[1][1] - e[1][0]) * this.H];
  }
  zoomLevel() {
    const z = Math.round(this.v.max_zoom + Math.log2(this.s));
    return Math.min(Math.max(z, 0), this.v.top_zoom);
  }
  tile(z, tx, ty) {
    const key = `${z}/${tx}/${ty}/${this.how}/${this.cmap}`;
    let t = this.tiles.get(key);
    if (!t) {
      t = new Image();
      t.onload = () => { t.ready = true; this.scheduleDraw(); };
      t.onerror = () => { window.hpcjobsStats.errors++; };
      t.src = api(`tile/${encodeURIComponent(this.step)}/${z}/${tx}/${ty}.png`, { how: this.how, cmap: this.cmap });
      window.hpcjobsStats.tiles++;
      this.tiles.set(key, t);
      if (this.tiles.size > 600) this.tiles.delete(this.tiles.keys().next().value);
    }
    return t;
  }
  scheduleDraw() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => { this.pending = null; this.draw(false); });
  }
  draw(request = true) {
    const c = this.canvas, g = c.getContext("2d"), m = this.margin;
    g.clearRect(0, 0, c.width, c.height);
    g.fillStyle = "#f0f0f0"; g.fillRect(m.l, 0, c.width - m.l, c.height - m.b);
    g.save(); g.beginPath(); g.rect(m.l, 0, c.width - m.l, c.height - m.b); g.clip();
    g.imageSmoothingEnabled = false;
    const z = this.zoomLevel(), f = Math.pow(2, this.v.max_zoom - z), span = 256 * f;
    const [u0, v1] = this.toBase(m.l, 0), [u1, v0] = this.toBase(c.width, c.height - m.b);
    const nx = Math.ceil(this.W / span), ny = Math.ceil(this.H / span);
    let shown = 0;
    for (let ty = Math.max(0, Math.floor(v0 / span)); ty <= Math.min(ny - 1, Math.floor(v1 / span)); ty++) {
      for (let tx = Math.max(0, Math.floor(u0 / span)); tx <= Math.min(nx - 1, Math.floor(u1 / span)); tx++) {
        const [sx, sy] = this.toScreen(tx * span, (ty + 1) * span), size = span * this.s;
        const t = request ? this.tile(z, tx, ty) : this.tiles.get(`${z}/${tx}/${ty}/${this.how}/${this.cmap}`);
        if (t && t.ready) { g.drawImage(t, sx, sy, size, size); shown++; continue; }
        // a coarser tile already loaded stands in until this one arrives
        for (let up = 1; z - up >= 0; up++) {
          const k = Math.pow(2, up), p = this.tiles.get(`${z - up}/${Math.floor(tx / k)}/${Math.floor(ty / k)}/${this.how}/${this.cmap}`);
          if (p && p.ready) {
            const part = 256 / k, ox = (tx % k) * part, oy = (k - 1 - (ty % k)) * part;
            g.drawImage(p, ox, oy, part, part, sx, sy, size, size);
            break;
          }
        }
      }
    }
    g.restore();
    this.axes(g, u0, u1, v0, v1);
    this.info.textContent = `zoom ${z} (level ${Math.min(Math.max(this.v.max_zoom - z, 0), this.v.levels.length - 1)}` +
      `${this.v.max_zoom - z > this.v.levels.length - 1 ? ", reduced further" : ""}), ${shown} tiles shown`;
  }
  axes(g, u0, u1, v0, v1) {
    const c = this.canvas, m = this.margin;
    g.fillStyle = "#fff"; g.fillRect(0, 0, m.l, c.height); g.fillRect(0, c.height - m.b, c.width, m.b);
    g.fillStyle = "#333"; g.strokeStyle = "#999"; g.font = "11px sans-serif";
    const [x0, y0] = this.dataOf(u0, v0), [x1, y1] = this.dataOf(u1, v1);
    for (const t of ticks(x0, x1, 8)) {
      const [sx] = this.toScreen(this.baseOf(t, 0)[0], 0);
      g.fillRect(sx, c.height - m.b, 1, 4); g.fillText(fmt(t), sx - 12, c.height - m.b + 16);
    }
    for (const t of ticks(y0, y1, 6)) {
      const [, sy] = this.toScreen(0, this.baseOf(0, t)[1]);
      g.fillRect(m.l - 4, sy, 4, 1); g.fillText(fmt(t), 2, sy + 4);
    }
    g.strokeRect(m.l, 0, c.width - m.l - 1, c.height - m.b);
  }
  readout(ev) {
    const r = this.canvas.getBoundingClientRect(), [u, v] = this.toBase(ev.clientX - r.left, ev.clientY - r.top);
    const [x, y] = this.dataOf(u, v);
    this.info.dataset.cursor = `x ${fmt(x)}, y ${fmt(y)} (pixel ${Math.floor(v)}, ${Math.floor(u)})`;
    this.info.title = this.info.dataset.cursor;
  }
}

// ----------------------------------------------------------------------------- series
class SeriesView {
  constructor(root, step, view) {
    this.step = step; this.v = view;
    const xr = view.panels.map(p => p.x_range);
    this.full = [Math.min(...xr.map(r => r[0])), Math.max(...xr.map(r => r[1]))];
    [this.x0, this.x1] = this.full;
    this.panels = view.panels.map(p => {
      const canvas = el("canvas", { width: 760, height: view.panels.length > 1 ? 200 : 300, "data-view": "series", "data-step": step, "data-source": p.source });
      const info = el("div", { class: "info" });
      root.append(el("div", { class: "controls", text: `${p.label}: ${p.n.toLocaleString("en")} points` +
        (p.kept ? ` (the job kept ${p.kept.toLocaleString("en")})` : "") }), canvas, info);
      interact(canvas, (f, x) => this.zoom(f, canvas, x), dx => this.pan(dx, canvas), () => this.reset());
      return { p, canvas, info, data: null };
    });
    if (view.markers && view.markers.length) {
      root.append(el("div", { class: "legend" },
        el("span", {}, el("i", { style: "background:#d62728" }), "discord"),
        el("span", {}, el("i", { style: "background:#2ca02c" }), "motif")));
    }
    if (view.note) root.append(el("div", { class: "note", text: view.note }));
    this.fetch();
  }
  get ml() { return 60; }
  reset() { [this.x0, this.x1] = this.full; this.fetch(); }
  xOf(canvas, px) { return this.x0 + (px - this.ml) / (canvas.width - this.ml) * (this.x1 - this.x0); }
  zoom(f, canvas, px) {
    const x = this.xOf(canvas, px), minSpan = 10;
    let span = Math.max((this.x1 - this.x0) / f, minSpan);
    span = Math.min(span, this.full[1] - this.full[0]);
    const t = (x - this.x0) / (this.x1 - this.x0);
    this.x0 = x - t * span; this.x1 = this.x0 + span;
    this.clamp(); this.draw(); this.schedule();
  }
  pan(dx, canvas) {
    const d = dx / (canvas.width - this.ml) * (this.x1 - this.x0);
    this.x0 -= d; this.x1 -= d; this.clamp(); this.draw(); this.schedule();
  }
  clamp() {
    const span = this.x1 - this.x0;
    if (this.x0 < this.full[0]) { this.x0 = this.full[0]; this.x1 = this.x0 + span; }
    if (this.x1 > this.full[1]) { this.x1 = this.full[1]; this.x0 = this.x1 - span; }
  }
  schedule() { clearTimeout(this.timer); this.timer = setTimeout(() => this.fetch(), 60); }
  async fetch() {
    const x0 = this.x0, x1 = this.x1;
    await Promise.all(this.panels.map(async pan => {
      const t0 = performance.now();
      window.hpcjobsStats.windows++;
      try {
        const d = await getJSON(`series/${encodeURIComponent(this.step)}/${pan.p.source}`,
          { x0, x1, n: 2 * (pan.canvas.width - this.ml) });
        pan.data = d;
        pan.info.textContent = `${fmt(x0)} .. ${fmt(x1)}: ${d.points.toLocaleString("en")} points in view, ` +
          `${d.x.length} drawn (${d.source}), ${Math.round(performance.now() - t0)} ms`;
      } catch (e) { pan.info.textContent = String(e); }
    }));
    this.draw();
  }
  draw() {
    for (const pan of this.panels) {
      const c = pan.canvas, g = c.getContext("2d"), ml = this.ml, h = c.height - 24, w = c.width - ml;
      g.clearRect(0, 0, c.width, c.height);
      const d = pan.data;
      if (!d || !d.x.length) continue;
      let lo = Infinity, hi = -Infinity;
      for (let i = 0; i < d.x.length; i++) if (d.x[i] >= this.x0 && d.x[i] <= this.x1) { lo = Math.min(lo, d.y[i]); hi = Math.max(hi, d.y[i]); }
      if (!(hi > lo)) { lo -= 1; hi += 1; }
      const pad = (hi - lo) * 0.05; lo -= pad; hi += pad;
      const X = x => ml + (x - this.x0) / (this.x1 - this.x0) * w, Y = y => 4 + (hi - y) / (hi - lo) * (h - 4);
      for (const mk of this.v.markers || []) {
        g.fillStyle = mk.kind === "discord" ? "rgba(214,39,40,0.25)" : "rgba(44,160,44,0.25)";
        const a = X(mk.start), b = X(mk.start + mk.length);
        if (b >= ml && a <= c.width) g.fillRect(Math.max(a, ml), 0, Math.max(b - a, 2), h);
      }
      g.save(); g.beginPath(); g.rect(ml, 0, w, h); g.clip();
      g.strokeStyle = "#1f77b4"; g.lineWidth = 1; g.beginPath();
      for (let i = 0; i < d.x.length; i++) { const px = X(d.x[i]), py = Y(d.y[i]); if (i) g.lineTo(px, py); else g.moveTo(px, py); }
      g.stroke(); g.restore();
      g.fillStyle = "#333"; g.font = "11px sans-serif"; g.strokeStyle = "#999";
      g.strokeRect(ml, 0, w - 1, h);
      for (const t of ticks(this.x0, this.x1, 8)) { g.fillRect(X(t), h, 1, 4); g.fillText(fmt(t), X(t) - 10, h + 16); }
      for (const t of ticks(lo, hi, 5)) { g.fillRect(ml - 4, Y(t), 4, 1); g.fillText(fmt(t), 2, Y(t) + 4); }
    }
  }
}

// ---------------------------------------------------------------------------- scatter
class ScatterView {
  constructor(root, step, view) {
    this.step = step; this.v = view;
    this.canvas = el("canvas", { width: 640, height: 480, "data-view": "scatter", "data-step": step });
    this.info = el("div", { class: "info" });
    this.legend = el("div", { class: "legend" });
    const ev = view.explained ? ` (explained variance ${view.explained.map(e => (100 * e).toFixed(1) + "%").join(", ")})` : "";
    root.append(el("div", { class: "controls", text: `${view.n.toLocaleString("en")} rows, components 1 and 2${ev}` +
      (view.labels ? `, coloured by ${view.labels}/labels` : "") + (view.aggregated ? ", aggregated to pixels" : "") }),
    this.canvas, this.legend, this.info);
    interact(this.canvas, (f, x, y) => this.zoom(f, x, y), (dx, dy) => this.pan(dx, dy), () => this.reset());
    this.reset();
    this.makeLegend();
    if (!view.aggregated) getJSON(`scatter/${encodeURIComponent(step)}/points`).then(d => {
      window.hpcjobsStats.scatter++; this.points = d; this.draw();
    });
  }
  reset() { [this.xr, this.yr] = [this.v.extent[0].slice(), this.v.extent[1].slice()]; this.changed(); }
  zoom(f, px, py) {
    const c = this.canvas, fx = px / c.width, fy = 1 - py / c.height;
    const x = this.xr[0] + fx * (this.xr[1] - this.xr[0]), y = this.yr[0] + fy * (this.yr[1] - this.yr[0]);
    const sx = (this.xr[1] - this.xr[0]) / f, sy = (this.yr[1] - this.yr[0]) / f;
    this.xr = [x - fx * sx, x - fx * sx + sx]; this.yr = [y - fy * sy, y - fy * sy + sy]; this.changed();
  }
  pan(dx, dy) {
    const c = this.canvas, ux = dx / c.width * (this.xr[1] - this.xr[0]), uy = dy / c.height * (this.yr[1] - this.yr[0]);
    this.xr = [this.xr[0] - ux, this.xr[1] - ux]; this.yr = [this.yr[0] + uy, this.yr[1] + uy]; this.changed();
  }
  changed() {
    if (!this.v.aggregated) return this.draw();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const img = new Image(), c = this.canvas;
      img.onload = () => { this.img = img; this.imgRange = [this.xr.slice(), this.yr.slice()]; this.draw(); };
      window.hpcjobsStats.scatter++;
      img.src = api(`scatter/${encodeURIComponent(this.step)}/image.png`,
        { x0: this.xr[0], x1: this.xr[1], y0: this.yr[0], y1: this.yr[1], w: c.width, h: c.height });
    }, 80);
    this.draw();
  }
  makeLegend() {
    const seen = (this.v.clusters || []).slice(0, 20);
    this.legend.replaceChildren(...seen.map(k => el("span", {}, el("i", { style: `background:${k < 0 ? "#b0b0b0" : PALETTE[k % 10]}` }), k < 0 ? "noise" : `cluster ${k}`)));
  }
  draw() {
    const c = this.canvas, g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    const X = x => (x - this.xr[0]) / (this.xr[1] - this.xr[0]) * c.width;
    const Y = y => c.height - (y - this.yr[0]) / (this.yr[1] - this.yr[0]) * c.height;
    if (this.v.aggregated && this.img) {
      const [xr, yr] = this.imgRange;
      g.drawImage(this.img, X(xr[0]), Y(yr[1]), X(xr[1]) - X(xr[0]), Y(yr[0]) - Y(yr[1]));
    } else if (this.points) {
      const p = this.points, r = p.x.length > 5000 ? 1.5 : 2.5;
      for (let i = 0; i < p.x.length; i++) {
        const k = p.labels ? p.labels[i] : 0;
        g.fillStyle = k < 0 ? "#b0b0b0" : PALETTE[k % 10];
        g.fillRect(X(p.x[i]) - r / 2, Y(p.y[i]) - r / 2, r, r);
      }
    }
    g.fillStyle = "#333"; g.font = "11px sans-serif";
    for (const t of ticks(this.xr[0], this.xr[1], 8)) { g.fillRect(X(t), c.height - 4, 1, 4); g.fillText(fmt(t), X(t) + 2, c.height - 6); }
    for (const t of ticks(this.yr[0], this.yr[1], 6)) { g.fillRect(0, Y(t), 4, 1); g.fillText(fmt(t), 6, Y(t) + 4); }
    this.info.textContent = `x ${fmt(this.xr[0])} .. ${fmt(this.xr[1])}, y ${fmt(this.yr[0])} .. ${fmt(this.yr[1])}`;
  }
}

// ------------------------------------------------------------------ k-means, describe
function kmeansView(root, step, v) {
  const C = v.centroids, k = C.length, d = C[0].length;
  const c = el("canvas", { width: 640, height: 300, "data-view": "kmeans", "data-step": step });
  root.append(el("div", { class: "controls", text: `${k} centroids over ${d} columns` +
    (v.inertia != null ? `, inertia ${fmt(v.inertia)}` : "") + (v.n_iter != null ? `, ${v.n_iter} iterations` : "") }), c);
  const g = c.getContext("2d"), ml = 50, h = c.height - 24;
  let lo = Math.min(...C.flat()), hi = Math.max(...C.flat()); const pad = (hi - lo) * 0.08 || 1; lo -= pad; hi += pad;
  const X = j => ml + 20 + j / Math.max(d - 1, 1) * (c.width - ml - 40), Y = y => (hi - y) / (hi - lo) * h;
  g.strokeStyle = "#999"; g.strokeRect(ml, 0, c.width - ml - 1, h);
  g.fillStyle = "#333"; g.font = "11px sans-serif";
  for (let j = 0; j < d; j++) g.fillText(`col ${j}`, X(j) - 12, h + 16);
  for (const t of ticks(lo, hi, 5)) { g.fillRect(ml - 4, Y(t), 4, 1); g.fillText(fmt(t), 2, Y(t) + 4); }
  C.forEach((row, i) => {
    g.strokeStyle = g.fillStyle = PALETTE[i % 10]; g.lineWidth = 2; g.beginPath();
    row.forEach((y, j) => (j ? g.lineTo(X(j), Y(y)) : g.moveTo(X(j), Y(y))));
    g.stroke();
    row.forEach((y, j) => g.fillRect(X(j) - 3, Y(y) - 3, 6, 6));
  });
  if (v.sizes) {
    const total = v.sizes.reduce((a, b) => a + b, 0) || 1;
    const rows = v.sizes.map((n, i) => [el("span", {}, el("i", { style: `display:inline-block;width:10px;height:10px;background:${PALETTE[i % 10]}` }), ` ${i}`), n, (100 * n / total).toFixed(1) + "%"]);
    root.append(table(["cluster", "rows", "share"], rows, 0, "sizes"));
  }
}

function histCanvas(counts, edges) {
  const c = el("canvas", { width: 160, height: 36, class: "hist" }), g = c.getContext("2d");
  const m = Math.max(...counts, 1), w = c.width / counts.length;
  g.fillStyle = "#4c78a8";
  counts.forEach((n, i) => { const bh = (n || 0) / m * (c.height - 2); g.fillRect(i * w, c.height - bh, Math.max(w - 0.5, 0.5), bh); });
  c.title = edges ? `${fmt(edges[0])} .. ${fmt(edges[edges.length - 1])}` : "";
  return c;
}

function describeView(root, step, v) {
  const cols = v.mean.length, rows = [];
  for (let j = 0; j < cols; j++) {
    rows.push([j, v.count[j], v.mean[j], v.std[j], v.min[j], v.max[j], v.hist ? histCanvas(v.hist[j], v.bin_edges && v.bin_edges[j]) : ""]);
  }
  root.append(table(["column", "count", "mean", "std", "min", "max", "histogram"], rows, 0, "describe"));
}

// --------------------------------------------------------------------------- tables
// a table sorted by a click on a column (numbers largest first, text A to Z; again: reversed)
function table(columns, rows, sortCol, kind, descending) {
  const t = el("table", { "data-view": kind || "table" });
  const head = el("tr", {}), body = el("tbody");
  let col = sortCol == null ? -1 : sortCol, asc = !descending;
  const render = () => {
    const sorted = col < 0 ? rows : [...rows].sort((a, b) => {
      const x = a[col], y = b[col];
      const r = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
      return asc ? r : -r;
    });
    body.replaceChildren(...sorted.slice(0, 500).map(r => el("tr", {}, ...r.map(c =>
      el("td", { class: typeof c === "number" ? "" : "text" }, c instanceof Node ? c : fmt(c))))));
    [...head.children].forEach((th, i) => { th.className = (i === col ? (asc ? "sorted-asc" : "sorted-desc") : "") + (typeof rows[0]?.[i] === "number" ? "" : " text"); });
  };
  columns.forEach((name, i) => {
    const th = el("th", { text: name });
    th.onclick = () => { if (col === i) asc = !asc; else { col = i; asc = typeof rows[0]?.[i] !== "number"; } render(); };
    head.append(th);
  });
  t.append(el("thead", {}, head), body);
  render();
  return t;
}

function tableView(root, step, v) {
  root.append(el("div", { class: "controls", text: `${v.total.toLocaleString("en")} rows` +
    (v.total > v.rows.length ? ` (the ${v.rows.length.toLocaleString("en")} of highest support here)` : "") +
    "; click a column to sort" }),
  el("div", { class: "scroll" }, table(v.columns, v.rows, v.columns.indexOf("support"), "table", true)));
}

function markersView(root, step, v) {
  root.append(el("div", { class: "controls", text: v.note }),
    table(["starts", "distance"], v.rows.map(r => [r.starts.join(", "), r.distance]), 1, "markers",
      v.of === "discords"));
}

// ----------------------------------------------------------------------------- page
function provenance(info) {
  const p = info.provenance, rows = Object.entries(p).filter(([, v]) => v != null).map(([k, v]) => [k, String(v)]);
  for (const [k, v] of Object.entries(info.inputs || {})) rows.push(["input", `${k}: ${JSON.stringify(v)}`]);
  const body = el("div", {}, table(["key", "value"], rows, null, "provenance"));
  body.append(el("details", {}, el("summary", { text: "versions" }),
    table(["library", "version"], Object.entries(info.versions || {}).map(([k, v]) => [k, String(v)]), 0, "versions")));
  if (info.runs && info.runs.length) body.append(el("details", {}, el("summary", { text: `${info.runs.length} run(s)` }),
    el("pre", { text: JSON.stringify(info.runs, null, 1) })));
  if (info.job) body.append(el("details", {}, el("summary", { text: "job file" }), el("pre", { text: info.job })));
  return body;
}

const VIEWS = {
  map: (r, s, v) => new MapView(r, s, v), series: (r, s, v) => new SeriesView(r, s, v),
  scatter: (r, s, v) => new ScatterView(r, s, v), kmeans: kmeansView, describe: describeView,
  table: tableView, markers: markersView,
};

async function main() {
  const info = await getJSON("summary");
  document.getElementById("title").textContent = `${info.provenance.job_name || ""} \u2014 ${info.path} (${info.provenance.status || "?"})`;
  const prov = document.querySelector("#provenance .body");
  prov.replaceChildren(provenance(info));
  const nav = document.getElementById("nav"), steps = document.getElementById("steps");
  for (const s of info.steps) {
    const id = `step-${s.name}`;
    nav.append(el("a", { href: `#${id}`, text: s.name }));
    const card = el("section", { class: "card", id, "data-kind": s.view.kind },
      el("h2", {}, s.name, el("span", { class: "kernel", text: `${s.kernel || "?"} \u00b7 ${s.status || "?"}` +
        (s.seconds != null ? ` \u00b7 ${fmt(s.seconds)} s` : "") })));
    const body = el("div", {});
    card.append(body);
    const arrays = table(["array", "shape", "dtype", "chunks", "dims"],
      s.arrays.map(a => [a.name, a.shape.join(" x ") || "scalar", a.dtype, a.chunks.join(" x "), a.dims.join(", ")]), null, "arrays");
    card.append(el("details", {}, el("summary", { text: `${s.arrays.length} arrays; params ${JSON.stringify(s.params)}; inputs ${JSON.stringify(s.inputs)}` }), arrays));
    steps.append(card);
    const make = VIEWS[s.view.kind];
    try {
      if (make) make(body, s.name, s.view);
      else if (s.view.note) body.append(el("div", { class: "note", text: s.view.note }));
    } catch (e) { window.hpcjobsStats.errors++; body.append(el("div", { class: "note", text: String(e) })); }
  }
  document.body.dataset.ready = "1";
}

main().catch(e => { window.hpcjobsStats.errors++; document.body.append(el("pre", { class: "note", text: String(e) })); });
