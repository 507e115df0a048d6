// The web page of `vstream serve`: open a stream, watch its memory, ask it questions.
// Plain ES2020, no framework. The HTTP API is described in docs/serve.md.
"use strict";

const KEY_STORAGE = "vstream-api-key";
const POLL_MS = 1000;

const state = {
  sessionId: null,   // the selected session
  session: null,     // its last GET /v1/sessions/{id}
  events: null,      // EventSource on its /events
  polling: false,    // a poll is in flight
  memoryKey: "",     // what the key frame strip shows now (to avoid redrawing it every second)
  camera: null,      // {sessionId, stream, socket, timer, began, busy} while the camera pushes frames
};

const $ = (id) => document.getElementById(id);

// A new element with properties (className, textContent, dataset, ...) and children.
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  Object.assign(node.dataset, dataset || {});
  node.append(...children);
  return node;
}

// ---------------------------------------------------------------- API helpers

class ApiError extends Error {
  constructor(status, detail) {
    super(status ? `${status}: ${detail}` : detail);
    this.status = status;
    this.detail = detail;
  }
}

// The saved API key, or "" when none.
function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

// An absolute URL for an API path ("v1/..."), relative to the page so a path prefix keeps working.
function apiUrl(path, { websocket = false, token = false } = {}) {
  const url = new URL(path.replace(/^\//, ""), document.baseURI);
  if (token && apiKey()) url.searchParams.set("token", apiKey());
  if (websocket) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

// Headers for a fetch: the key, and a JSON content type when there is a JSON body.
function headers(json) {
  return { ...(apiKey() && { Authorization: `Bearer ${apiKey()}` }), ...(json && { "Content-Type": "application/json" }) };
}

// Reads an error response into an ApiError with a readable detail (JSON {"detail"} or plain text).
async function errorOf(response) {
  let detail = response.statusText || "request failed";
  const text = (await response.text().catch(() => "")).trim();
  try {
    const d = JSON.parse(text).detail ?? text;
    detail = typeof d === "string" ? d : JSON.stringify(d);
  } catch {
    if (text && !text.startsWith("<")) detail = text.slice(0, 300);  // plain text, never an HTML page
  }
  if (response.status === 401) showKeyPanel();
  return new ApiError(response.status, detail);
}

// fetch() for the API: JSON in (`body` object) and out; raises ApiError on a non-2xx reply.
async function api(method, path, { body, form, raw = false } = {}) {
  const options = { method, headers: headers(body !== undefined) };
  if (body !== undefined) options.body = JSON.stringify(body);
  if (form) options.body = form;
  let response;
  try {
    response = await fetch(apiUrl(path), options);
  } catch (err) {
    throw new ApiError(0, `the server cannot be reached (${err.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  if (raw) return response;
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

// A line at the top of the page: info, or an error (stays until the next message).
function showMessage(text, isError = false) {
  Object.assign($("message"), { textContent: text, className: isError ? "message error" : "message", hidden: !text });
}

// An error as readable text: "Error 409: nothing has streamed yet".
function errorText(err) {
  return err instanceof ApiError && err.status ? `Error ${err.message}` : `Error: ${err.message || err}`;
}

function showError(err) {
  showMessage(errorText(err), true);
}

function showKeyPanel() {
  $("key-panel").hidden = false;
  $("api-key").value = apiKey();
}

// A time with at most two decimals ("2" for 2.0003), or "?".
function num(value) {
  return typeof value === "number" && Number.isFinite(value) ? String(+value.toFixed(2)) : "?";
}

// "12.3 s" with one decimal, or "–".
function secs(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${value.toFixed(1)} s` : "–";
}

// ---------------------------------------------------------------- sessions

// Reloads the session list into the select, keeping the selection.
async function loadSessions() {
  const { sessions } = await api("GET", "v1/sessions");
  const select = $("session-select");
  select.replaceChildren(new Option("(none)", ""));
  for (const s of sessions) {
    const label = `${s.name || s.id} · ${s.source} (${s.state})`;
    select.add(new Option(label, s.id));
  }
  select.value = state.sessionId && sessions.some((s) => s.id === state.sessionId) ? state.sessionId : "";
}

// Makes `id` the session the page shows (null: none), resetting the views and the event stream.
// Leaving the camera's session stops the camera.
function selectSession(id) {
  if (id === state.sessionId) return;
  if (state.camera && state.camera.sessionId !== id) stopCamera();
  if (state.events) state.events.close();
  state.events = null;
  state.sessionId = id;
  state.session = null;
  state.memoryKey = "";
  $("chat").replaceChildren();
  $("alerts").replaceChildren();
  $("watch-list").replaceChildren();
  $("keyframes").replaceChildren();
  $("token-counts").textContent = "";
  drawTimeline(null);
  $("no-session").hidden = Boolean(id);
  $("stream-view").hidden = !id;
  $("close-session").disabled = !id;
  $("newest-frame").hidden = true;
  $("camera-video").hidden = !(state.camera && state.camera.sessionId === id);
  for (const dd of $("session-status").querySelectorAll("dd")) dd.textContent = "–";
  $("session-status").dataset.frames = "0";
  if (id) {
    if (!$("session-select").querySelector(`option[value="${CSS.escape(id)}"]`)) {
      $("session-select").add(new Option(id, id));
    }
    $("session-select").value = id;
    openEvents(id);
    poll();
  } else {
    $("session-select").value = "";
  }
}

// POST /v1/sessions with the source panel's fields, then shows the new session.
async function openSource(event) {
  event.preventDefault();
  const source = $("source").value.trim();
  if (!source) return showMessage("Enter a source first: a URL, a server file or synthetic:60.", true);
  const body = { source, fps: Number($("fps").value) || 1, speed: Number($("speed").value) };
  try {
    const session = await api("POST", "v1/sessions", { body });
    showMessage(`Opened ${session.id} (${session.kind}).`);
    selectSession(session.id);
    await loadSessions();
  } catch (err) {
    showError(err);
  }
}

// POST /v1/sessions/upload with the chosen file (multipart), then shows the new session.
async function uploadFile(event) {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) return showMessage("Choose a video file to upload first.", true);
  const form = new FormData();
  form.append("file", file);
  form.append("fps", String(Number($("fps").value) || 1));
  form.append("speed", String(Number($("speed").value)));
  showMessage(`Uploading ${file.name}…`);
  try {
    const session = await api("POST", "v1/sessions/upload", { form });
    showMessage(`Opened ${session.id} from ${file.name}.`);
    selectSession(session.id);
    await loadSessions();
  } catch (err) {
    showError(err);
  }
}

// DELETE the selected session.
async function closeSession() {
  const id = state.sessionId;
  if (!id) return;
  if (state.camera && state.camera.sessionId === id) stopCamera(false);  // DELETE ends it anyway
  selectSession(null);
  try {
    await api("DELETE", `v1/sessions/${id}`);
    showMessage(`Closed ${id}.`);
  } catch (err) {
    showError(err);
  }
  await loadSessions().catch(showError);
}

// ---------------------------------------------------------------- polling: status, memory, watches

// Refreshes the selected session's status, memory and watches (one poll at a time).
async function poll() {
  const id = state.sessionId;
  if (!id || state.polling) return;
  state.polling = true;
  try {
    const session = await api("GET", `v1/sessions/${id}`);
    if (id !== state.sessionId) return;
    state.session = session;
    showStatus(session);
    if (session.frames_in_memory > 0 || session.frames_read > 0) {
      const memory = await api("GET", `v1/sessions/${id}/memory`);
      if (id === state.sessionId) showMemory(memory);
    }
    const watches = await api("GET", `v1/sessions/${id}/watches`);
    if (id === state.sessionId) showWatches(watches.watches || watches);
  } catch (err) {
    if (id === state.sessionId) {
      if (err.status === 404) {
        showMessage(`Session ${id} is gone.`, true);
        selectSession(null);
        loadSessions().catch(() => {});
      } else {
        showError(err);
      }
    }
  } finally {
    state.polling = false;
  }
}

// Fills the status list from a session object.
function showStatus(s) {
  $("status-state").textContent = s.state + (s.end_reason ? ` (${s.end_reason})` : "");
  $("status-position").textContent = secs(s.position);
  $("status-frames").textContent = `${s.frames_in_memory} of ${s.frames_read} read`;
  $("status-dropped").textContent = String(s.frames_dropped);
  $("status-lag").textContent = typeof s.lag_s === "number" ? `${Math.round(s.lag_s * 1000)} ms` : "–";
  $("session-status").dataset.frames = String(s.frames_in_memory);
  $("session-status").dataset.state = s.state;
}

// Shows a memory snapshot: newest frame, timeline, token counts and key frames.
function showMemory(memory) {
  const newest = memory.newest_frame;
  const isCamera = state.camera && state.camera.sessionId === state.sessionId;
  if (newest && newest.thumbnail && !isCamera) {
    const img = $("newest-frame");
    if (img.getAttribute("src") !== newest.thumbnail) img.src = newest.thumbnail;
    img.title = `t = ${secs(newest.time)}`;
    img.hidden = false;
  }
  drawTimeline(memory);
  const counts = memory.token_counts || {};
  $("token-counts").textContent = "tokens: " + Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(" · ") +
    ` (total ${memory.num_tokens}) · ${memory.frames_seen} frames seen`;
  showKeyFrames(memory);
}

// Draws the timeline SVG: temporal centroids as bars (height ∝ weight) over their span, frame markers.
function drawTimeline(memory) {
  const svg = $("timeline");
  const W = 800, H = 160, left = 30, right = 10, top = 10, bottom = 130;
  const ns = "http://www.w3.org/2000/svg";
  const el = (name, attrs, text) => {
    const node = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const parts = [];
  const items = memory ? (memory.items || []).filter((it) => it.memory !== "abstract") : [];
  if (!items.length) {
    parts.push(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" },
      memory ? "the memory is empty so far" : "no session"));
    svg.replaceChildren(...parts);
    return;
  }
  const timeOf = (it) => it.time_mean ?? it.time_start ?? 0;
  const end = Math.max(memory.latest_time || 0, ...items.map((it) => it.time_end ?? timeOf(it)), 1);
  const x = (t) => left + ((W - left - right) * t) / end;
  const maxWeight = Math.max(...items.filter((it) => it.memory === "temporal").map((it) => it.weight || 1), 1);
  parts.push(el("line", { x1: left, y1: bottom, x2: W - right, y2: bottom, class: "axis" }));
  const step = niceStep(end);
  for (let t = 0; t <= end + 1e-9; t += step) {
    parts.push(el("line", { x1: x(t), y1: bottom, x2: x(t), y2: bottom + 4, class: "axis" }));
    parts.push(el("text", { x: x(t), y: bottom + 16, "text-anchor": "middle", class: "tick" }, `${+t.toFixed(1)}`));
  }
  parts.push(el("text", { x: W - right, y: H - 2, "text-anchor": "end", class: "tick" }, "stream time (s)"));
  for (const it of items) {
    const t = timeOf(it);
    if (it.memory === "temporal") {
      const t0 = it.time_start ?? t, t1 = it.time_end ?? t;
      parts.push(el("rect", { x: x(t0), y: top, width: Math.max(x(t1) - x(t0), 1), height: bottom - top,
        class: "span" }));
      const height = Math.max(((bottom - top - 20) * (it.weight || 1)) / maxWeight, 2);
      const bar = el("rect", { x: x(t) - 3, y: bottom - height, width: 6, height, class: "temporal" });
      bar.appendChild(el("title", {}, `centroid at ${secs(t)} (${secs(t0)}–${secs(t1)}), weight ${it.weight}`));
      parts.push(bar);
    } else {
      const cls = it.memory === "spatial" ? "spatial" : "retrieved";
      const y = cls === "spatial" ? top + 8 : top + 20;
      const mark = el("polygon", { points: `${x(t) - 5},${y - 6} ${x(t) + 5},${y - 6} ${x(t)},${y + 3}`,
        class: cls });
      mark.appendChild(el("title", {}, `${it.memory} frame at ${secs(t)}`));
      parts.push(mark);
    }
  }
  svg.replaceChildren(...parts);
}

// A tick step giving about 8 ticks over [0, end].
function niceStep(end) {
  const raw = end / 8;
  const base = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * base >= raw) return m * base;
  return 10 * base;
}

// The thumbnails of the retrieved key frames and the spatial (newest) frames, each with its time.
function showKeyFrames(memory) {
  const frames = (memory.items || [])
    .filter((it) => (it.memory === "retrieved" || it.memory === "spatial") && it.thumbnail)
    .sort((a, b) => (a.time_mean ?? a.time_start) - (b.time_mean ?? b.time_start));
  const key = frames.map((it) => `${it.memory}@${it.time_mean ?? it.time_start}`).join(",");
  if (key === state.memoryKey) return;
  state.memoryKey = key;
  $("keyframes").replaceChildren(...frames.map((it) => h("figure", { className: it.memory },
    h("img", { src: it.thumbnail, alt: `${it.memory} frame` }),
    h("figcaption", { textContent: `${it.memory} · t = ${secs(it.time_mean ?? it.time_start)}` }))));
}

// ---------------------------------------------------------------- chat

// Adds a chat bubble; returns it.
function bubble(kind, text) {
  const div = h("div", { className: `bubble ${kind}` }, h("div", { className: "text", textContent: text }));
  $("chat").appendChild(div);
  $("chat").scrollTop = $("chat").scrollHeight;
  return div;
}

// Ends an answer bubble with a line of text (latency, or an error).
function finishBubble(div, cls, text) {
  div.classList.remove("pending");
  div.appendChild(h("div", { className: cls, textContent: text }));
  div.dataset.done = cls;
  $("chat").scrollTop = $("chat").scrollHeight;
}

// Asks the selected session a question and streams the answer's tokens into a bubble.
async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!state.sessionId) return showMessage("No session selected: open a source first.", true);
  if (!question) return;
  $("question").value = "";
  bubble("question", question);
  const answer = bubble("answer pending", "");
  const text = answer.querySelector(".text");
  try {
    const response = await api("POST", `v1/sessions/${state.sessionId}/questions`,
      { body: { question, stream: true }, raw: true });
    let finished = false;
    await readEvents(response, (name, data) => {
      if (name === "token") {
        text.textContent += data.text || "";
        $("chat").scrollTop = $("chat").scrollHeight;
      } else if (name === "done") {
        finished = true;
        if (data.answer && !text.textContent) text.textContent = data.answer;
        const ms = (s) => Math.round((s || 0) * 1000);
        finishBubble(answer, "latency",
          `about t = ${num(data.latest_frame_time)} s · first token ${ms(data.ttft_s)} ms · total ${ms(data.total_s)} ms`);
      } else if (name === "error") {
        finished = true;
        finishBubble(answer, "error", `Error: ${data.detail || "the answer failed"}`);
      }
    });
    if (!finished) finishBubble(answer, "error", "Error: the answer stream ended early");
  } catch (err) {
    finishBubble(answer, "error", errorText(err));
  }
}

// Parses a Server-Sent Events body (fetch ReadableStream), calling onEvent(name, parsedData) per event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const dispatch = (block) => {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;  // a comment (keep-alive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch {
      parsed = { text: data.join("\n") };
    }
    onEvent(name, parsed);
  };
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    buffer = buffer.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
    if (done) break;
  }
  if (buffer.trim()) dispatch(buffer);
}

// ---------------------------------------------------------------- standing questions and events

// POST a standing question for the selected session.
async function addWatch(event) {
  event.preventDefault();
  if (!state.sessionId) return showMessage("No session selected: open a source first.", true);
  const question = $("watch-question").value.trim();
  if (!question) return;
  const match = $("watch-match").value.trim();
  try {
    await api("POST", `v1/sessions/${state.sessionId}/watches`, { body: { question, match: match || null } });
    $("watch-question").value = "";
    $("watch-match").value = "";
    poll();
  } catch (err) {
    showError(err);
  }
}

// Lists the watches with their current value.
function showWatches(watches) {
  $("watch-list").replaceChildren(...watches.map((w) => {
    const word = w.value === true ? "yes" : w.value === false ? "no" : "";
    const value = h("span", { className: `value ${word}`, textContent: word || "not known yet" });
    const remove = h("button", { type: "button", textContent: "×", title: "stop watching" });
    remove.addEventListener("click", () => removeWatch(w.id));
    const match = w.match ? ` [match “${w.match}”]` : "";
    const checks = `, ${w.checks} checks` + (w.stream_time != null ? `, last at t = ${secs(w.stream_time)}` : "");
    return h("li", { dataset: { id: w.id } }, `${w.question}${match} → `, value, ` (${w.id}${checks})`, remove);
  }));
}

async function removeWatch(wid) {
  try {
    await api("DELETE", `v1/sessions/${state.sessionId}/watches/${wid}`);
    poll();
  } catch (err) {
    showError(err);
  }
}

// Adds an alert line (newest first).
function alertLine(text, cls) {
  $("alerts").prepend(h("li", { className: cls, textContent: text }));
}

// Listens to the session's event stream: watch values that flip, and state changes.
function openEvents(id) {
  const source = new EventSource(apiUrl(`v1/sessions/${id}/events`, { token: true }));
  source.addEventListener("watch", (e) => {
    const d = JSON.parse(e.data);
    const value = d.value === true ? "yes" : d.value === false ? "no" : String(d.value);
    alertLine(`t = ${num(d.stream_time)} s: ${d.question} → ${value}`, "watch");
    poll();
  });
  source.addEventListener("state", (e) => {
    const d = JSON.parse(e.data);
    alertLine(`session ${d.state}${d.end_reason ? `: ${d.end_reason}` : ""}`, "state");
    if (d.state === "ended") source.close();  // nothing more will come; stops the browser reconnecting
  });
  state.events = source;
}

// ---------------------------------------------------------------- camera

// Starts the browser's camera as a push session: frames go over the WebSocket at the chosen fps.
async function startCamera() {
  const fps = Number($("fps").value) || 1;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return showMessage("This browser cannot use a camera here (it needs https or localhost).", true);
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (err) {
    return showMessage(`The camera is not available: ${err.message}`, true);
  }
  let session;
  try {
    session = await api("POST", "v1/sessions", { body: { source: "push", fps, name: "camera" } });
  } catch (err) {
    stream.getTracks().forEach((t) => t.stop());
    return showError(err);
  }
  const video = $("camera-video");
  video.srcObject = stream;
  await video.play().catch(() => {});
  const socket = new WebSocket(apiUrl(`v1/sessions/${session.id}/frames`, { websocket: true, token: true }));
  socket.binaryType = "arraybuffer";
  const cam = { sessionId: session.id, stream, socket, timer: null, began: performance.now(), busy: false };
  state.camera = cam;
  socket.addEventListener("message", (e) => showAck(e.data));
  socket.addEventListener("close", () => {
    if (state.camera === cam) $("camera-acks").textContent += " · connection closed";
  });
  socket.addEventListener("open", () => {
    cam.began = performance.now();
    cam.timer = setInterval(() => sendFrame(cam), 1000 / fps);
  });
  $("camera").textContent = "Stop camera";
  $("camera").classList.add("active");
  $("camera-acks").textContent = "connecting…";
  selectSession(session.id);
  $("camera-video").hidden = false;
  $("newest-frame").hidden = true;
  await loadSessions().catch(showError);
}

// Grabs the video into the canvas (at most 640 px wide) and sends it: float64 LE stream time + JPEG.
function sendFrame(cam) {
  const video = $("camera-video");
  if (cam.busy || cam.socket.readyState !== WebSocket.OPEN || !video.videoWidth) return;
  cam.busy = true;
  const time = (performance.now() - cam.began) / 1000;
  const canvas = $("camera-canvas");
  const scale = Math.min(1, 640 / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  canvas.toBlob(async (blob) => {
    try {
      if (!blob || cam.socket.readyState !== WebSocket.OPEN) return;
      const jpeg = new Uint8Array(await blob.arrayBuffer());
      const message = new Uint8Array(8 + jpeg.length);
      new DataView(message.buffer).setFloat64(0, time, true);
      message.set(jpeg, 8);
      cam.socket.send(message.buffer);
    } finally {
      cam.busy = false;
    }
  }, "image/jpeg", 0.8);
}

// Shows the server's answer to a pushed frame.
function showAck(data) {
  let ack;
  try {
    ack = JSON.parse(data);
  } catch {
    return;
  }
  $("camera-acks").textContent = ack.error ? `frame refused: ${ack.error}`
    : `sent ${ack.received} frames · dropped ${ack.dropped} · pending ${ack.pending} · at ${secs(ack.position)}`;
}

// Stops the camera and the pushing; with `end`, POST /end (the session keeps its memory for questions).
function stopCamera(end = true) {
  const cam = state.camera;
  if (!cam) return;
  state.camera = null;
  clearInterval(cam.timer);
  cam.stream.getTracks().forEach((t) => t.stop());
  if (cam.socket.readyState <= WebSocket.OPEN) cam.socket.close();
  $("camera-video").srcObject = null;
  $("camera-video").hidden = true;
  $("camera").textContent = "Use camera";
  $("camera").classList.remove("active");
  $("camera-acks").textContent = "camera stopped";
  if (end) api("POST", `v1/sessions/${cam.sessionId}/end`).catch(() => {});
}

// ---------------------------------------------------------------- start

function init() {
  $("open-form").addEventListener("submit", openSource);
  $("upload-form").addEventListener("submit", uploadFile);
  $("camera").addEventListener("click", () => (state.camera ? stopCamera() : startCamera()));
  $("session-select").addEventListener("change", (e) => selectSession(e.target.value || null));
  $("refresh-sessions").addEventListener("click", () => loadSessions().catch(showError));
  $("close-session").addEventListener("click", closeSession);
  $("ask-form").addEventListener("submit", ask);
  $("watch-form").addEventListener("submit", addWatch);
  $("key-panel").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    $("key-panel").hidden = true;
    showMessage("Key saved in this browser.");
    if (state.sessionId) {
      const id = state.sessionId;
      selectSession(null);
      selectSession(id);
    }
    loadSessions().catch(showError);
  });
  if (apiKey()) $("api-key").value = apiKey();
  drawTimeline(null);
  loadSessions().catch(showError);
  setInterval(poll, POLL_MS);
}

init();
