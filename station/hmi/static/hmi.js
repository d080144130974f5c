/* The operator's screen: renders inspections, follows the station live (server-sent events),
   sends the actions. Plain browser JavaScript, no library, no build step. */
"use strict";

const boot = JSON.parse(document.getElementById("boot").textContent);
const page = boot.page;
const SVG = "http://www.w3.org/2000/svg";

function $(id) { return document.getElementById(id); }

function text(el, value) { if (el) el.textContent = value == null ? "" : String(value); }

function toast(message, kind) {
  const el = $("toast");
  el.textContent = message;
  el.className = "toast " + (kind || "info");
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 12000 : 5000);
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = {error: response.statusText}; }
  if (!response.ok || data.ok === false) throw new Error(data.error || response.statusText);
  return data;
}

/* ---- one inspection ------------------------------------------------------------------- */

function renderInspection(vm) {
  const root = $("inspection");
  if (!root || !vm) return;
  root.dataset.inspectionId = vm.inspection_id;
  const banner = $("verdict");
  banner.className = "verdict " + vm.verdict_class;
  text($("verdict-word"), vm.verdict);
  text($("part-id"), vm.part_id);
  text($("verdict-time"), vm.time);
  text($("cycle"), vm.cycle);
  text($("inspection-id"), vm.inspection_id);
  text($("model"), vm.model);
  text($("model-note"), vm.model_note);
  text($("op-id"), vm.operating_point.id);
  $("op-id").title = vm.operating_point.text;
  text($("calibration"), vm.calibration);
  const reasons = $("reasons");
  reasons.replaceChildren(...vm.reasons.map((r) => {
    const li = document.createElement("li");
    li.textContent = r;
    return li;
  }));
  const cameras = $("cameras");
  cameras.replaceChildren(...vm.cameras.map(renderCamera));
  root.dataset.renderedAt = String(Date.now());
}

function renderCamera(cam) {
  const fig = $("camera-template").content.firstElementChild.cloneNode(true);
  fig.dataset.camera = cam.camera;
  text(fig.querySelector(".cam-name"), cam.camera);
  text(fig.querySelector(".cam-summary"), cam.summary);
  const frame = fig.querySelector(".frame");
  const w = cam.width || 4, h = cam.height || 3;
  frame.style.aspectRatio = w + " / " + h;
  frame.style.setProperty("--ar", String(w / h));
  const img = fig.querySelector("img");
  if (cam.image) {
    img.src = cam.image;
    img.alt = cam.camera + " (" + cam.image_kind + ")";
    if (cam.image_kind !== "photo") {
      img.classList.add("map");
      const kind = fig.querySelector(".image-kind");
      kind.textContent = "No picture of this frame here: its defect map is shown.";
      kind.hidden = false;
    }
  } else {
    img.remove();
    const none = fig.querySelector(".no-image");
    none.textContent = cam.image_note;
    none.hidden = false;
  }
  const svg = fig.querySelector("svg");
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  const labels = fig.querySelector(".labels");
  const body = fig.querySelector("tbody");
  for (const d of cam.defects) {
    for (const cls of ["halo", "line"]) {
      const poly = document.createElementNS(SVG, "polygon");
      poly.setAttribute("points", d.points);
      poly.setAttribute("class", cls + (d.failing ? " failing" : " tolerated"));
      if (cls === "line") poly.setAttribute("stroke", d.colour);
      poly.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(poly);
    }
    const label = document.createElement("span");
    label.className = "label" + (d.failing ? " failing" : "");
    label.textContent = d.label;
    label.style.borderColor = d.colour;
    label.dataset.box = d.box.join(",");
    labels.appendChild(label);
    const tr = document.createElement("tr");
    for (const v of [d.n, d.class_name, d.area, d.score, d.failing ? "over" : "below"]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    tr.firstChild.style.color = d.colour;
    if (d.failing) tr.className = "failing";
    body.appendChild(tr);
  }
  if (!cam.defects.length) fig.querySelector("table").hidden = true;
  requestAnimationFrame(() => placeLabels(frame, w, h));
  return fig;
}

/* Labels: next to their defect, never over another label; one that fits nowhere is hidden
   (its defect keeps its number in the table). Re-done whenever the frame changes size. */
function placeLabels(frame, w, h) {
  const fw = frame.clientWidth, fh = frame.clientHeight;
  if (!fw || !fh) return;
  const sx = fw / w, sy = fh / h, gap = 3;
  const placed = [];
  const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  for (const label of frame.querySelectorAll(".label")) {
    label.hidden = false;
    const [bx, by, bw, bh] = label.dataset.box.split(",").map(Number);
    const box = {x: bx * sx, y: by * sy, w: Math.max(1, bw * sx), h: Math.max(1, bh * sy)};
    const lw = label.offsetWidth, lh = label.offsetHeight;
    const candidates = [
      {x: box.x, y: box.y - lh - gap}, {x: box.x, y: box.y + box.h + gap},
      {x: box.x + box.w + gap, y: box.y}, {x: box.x - lw - gap, y: box.y},
      {x: box.x + gap, y: box.y + gap},
    ].map((c) => ({x: c.x, y: c.y, w: lw, h: lh}))
      .filter((c) => c.x >= 0 && c.y >= 0 && c.x + c.w <= fw && c.y + c.h <= fh);
    const spot = candidates.find((c) => !placed.some((p) => overlaps(c, p)));
    if (!spot) { label.hidden = true; continue; }
    placed.push(spot);
    label.style.left = spot.x + "px";
    label.style.top = spot.y + "px";
  }
}

window.addEventListener("resize", () => {
  for (const frame of document.querySelectorAll(".frame")) {
    const box = frame.querySelector("svg").viewBox.baseVal;
    placeLabels(frame, box.width, box.height);
  }
});

/* ---- alarm and health ------------------------------------------------------------------ */

function renderAlarm(alarm) {
  const bar = $("alarm");
  bar.hidden = !alarm;
  if (!alarm) return;
  const link = $("alarm-text");
  link.textContent = alarm.text;
  link.href = "/part/" + encodeURIComponent(alarm.inspection_id);
  const ack = $("ack");
  if (ack) ack.dataset.upto = alarm.finished_at;
}

function renderHealth(health) {
  for (const el of [$("health-pill"), $("health-state")]) {
    if (!el) continue;
    el.textContent = health.state;
    el.className = "pill " + health.state_class;
  }
  if (page !== "health") return;
  text($("status-lines"), health.lines.join("\n"));
  text($("health-age"), health.age ? "status " + health.age : "");
  const problems = $("problems");
  const items = health.problems.length ? health.problems : [null];
  problems.replaceChildren(...items.map((p) => {
    const li = document.createElement("li");
    li.textContent = p || "none";
    if (!p) li.className = "ok";
    return li;
  }));
}

function addEvent(e) {
  const body = document.querySelector("#events tbody");
  if (!body) return;
  const tr = document.createElement("tr");
  tr.className = e.level;
  for (const v of [e.time, e.kind, e.detail]) {
    const td = document.createElement("td");
    td.textContent = v;
    tr.appendChild(td);
  }
  body.prepend(tr);
  const none = $("no-events");
  if (none) none.remove();
}

/* ---- live updates -------------------------------------------------------------------- */

function follow() {
  const source = new EventSource("/events");
  source.addEventListener("hello", (ev) => {
    const state = JSON.parse(ev.data);
    if (page === "live" && state.inspection) renderInspection(state.inspection);
    renderAlarm(state.alarm);
    renderHealth(state.health);
    document.body.dataset.live = "yes";
  });
  source.addEventListener("verdict", (ev) => {
    const vm = JSON.parse(ev.data);
    if (page === "live") renderInspection(vm);
  });
  source.addEventListener("alarm", (ev) => renderAlarm(JSON.parse(ev.data)));
  source.addEventListener("health", (ev) => renderHealth(JSON.parse(ev.data)));
  source.addEventListener("event", (ev) => addEvent(JSON.parse(ev.data)));
  source.onerror = () => { document.body.dataset.live = "no"; };
}

/* ---- actions ------------------------------------------------------------------------- */

function wire(id, event, handler) {
  const el = $(id);
  if (el) el.addEventListener(event, handler);
}

wire("trigger-form", "submit", async (ev) => {
  ev.preventDefault();
  const button = $("trigger");
  button.disabled = true;
  try {
    const r = await post("/api/trigger", {part_id: $("trigger-part").value});
    toast("Triggered part " + r.part_id + " (inspection " + r.inspection_id + ")", "info");
  } catch (e) {
    toast("Trigger refused: " + e.message, "error");
  } finally {
    button.disabled = false;
  }
});

wire("ack", "click", async () => {
  try {
    const r = await post("/api/ack", {upto: $("ack").dataset.upto});
    renderAlarm(r.alarm);
    toast("Acknowledged", "info");
  } catch (e) {
    toast("Not acknowledged: " + e.message, "error");
  }
});

wire("disagree-form", "submit", async (ev) => {
  ev.preventDefault();
  const form = $("disagree-form");
  try {
    const r = await post("/api/disagree", {
      inspection_id: form.dataset.inspectionId, note: $("disagree-note").value,
    });
    const where = r.files.length ? r.files.length / 2 + " image(s) exported to " + r.folder : "";
    toast("Marked: operator says " + r.operator_says + ". " + (r.problem || where),
          r.problem ? "error" : "info");
    setTimeout(() => location.reload(), 1200);
  } catch (e) {
    toast("Not marked: " + e.message, "error");
  }
});

wire("login-form", "submit", async (ev) => {
  ev.preventDefault();
  try {
    await post("/api/login", {token: $("token").value});
    location.href = $("login-form").dataset.next || "/live";
  } catch (e) {
    toast("Not signed in: " + e.message, "error");
  }
});

wire("logout", "click", async () => {
  await post("/api/logout", {});
  location.reload();
});

if (boot.inspection) renderInspection(boot.inspection);
renderAlarm(boot.alarm);
follow();
