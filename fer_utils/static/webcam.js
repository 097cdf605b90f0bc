// Front end of fer_utils.webcam: browser camera -> JPEG -> kernel -> boxes and labels drawn over
// the live picture. At most MAX_IN_FLIGHT frames travel at a time: a new one is captured only when
// the kernel has answered an earlier one (or REPLY_TIMEOUT_MS has passed), so a slow kernel sets the
// pace instead of piling up messages. Two, not one: the kernel works on one frame while the next is
// on its way, because the messages' round trip, not the kernel, takes most of each frame's time.
//
// The kernel smooths each face's probabilities over the frames (fer_utils.faces.LabelSmoother), so
// labels do not flicker; beside the picture, the largest face's label and its seven probabilities.
//
// The root element carries data attributes for tests and curious users: data-state,
// data-frames-sent, data-results, data-faces (in the last result), data-labels, data-fps,
// data-top-labels (the largest face's label in each of the last LABEL_HISTORY results), and the
// kernel's counters data-kernel-frames and data-kernel-labels.

const REPLY_TIMEOUT_MS = 10000;
const MAX_IN_FLIGHT = 2;
const FPS_WINDOW = 10; // frames per second over the last this many round trips
const LABEL_HISTORY = 20;

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "fer-webcam";
  root.style.cssText = "font-family: sans-serif; font-size: 13px; display: inline-flex; gap: 12px; align-items: flex-start;";
  const left = document.createElement("div");
  const stage = document.createElement("div");
  stage.style.cssText = "position: relative; display: inline-block; background: #111; min-width: 320px; min-height: 240px;";
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.autoplay = true;
  video.style.cssText = "display: block; max-width: 100%;";
  const overlay = document.createElement("canvas");
  overlay.style.cssText = "position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none;";
  stage.append(video, overlay);
  const bar = document.createElement("div");
  bar.style.cssText = "margin-top: 4px; display: flex; gap: 8px; align-items: center;";
  const button = document.createElement("button");
  const status = document.createElement("span");
  bar.append(button, status);
  left.append(stage, bar);
  // The largest face's label and a bar per class.
  const chart = document.createElement("div");
  chart.style.cssText = "min-width: 190px;";
  const topLabel = document.createElement("div");
  topLabel.style.cssText = "font-size: 18px; font-weight: bold; margin-bottom: 6px;";
  const bars = document.createElement("div");
  chart.append(topLabel, bars);
  root.append(left, chart);
  el.append(root);
  let topLabels = [];

  function showChart(faces) {
    if (!faces.length) { topLabel.textContent = "no face"; bars.replaceChildren(); return; }
    const face = faces.reduce((a, b) => (b.box[2] * b.box[3] > a.box[2] * a.box[3] ? b : a));
    topLabel.textContent = `${face.label} ${Math.round(100 * face.confidence)}%`;
    topLabels.push(face.label);
    if (topLabels.length > LABEL_HISTORY) topLabels.shift();
    root.dataset.topLabels = topLabels.join(",");
    bars.replaceChildren(...Object.entries(face.probabilities).map(([name, p]) => {
      const row = document.createElement("div");
      row.style.cssText = "display: flex; align-items: center; gap: 6px; margin: 2px 0;";
      const label = document.createElement("span");
      label.style.cssText = "width: 62px;";
      label.textContent = name;
      const track = document.createElement("span");
      track.style.cssText = "flex: 1; height: 10px; background: #eee; position: relative;";
      const fill = document.createElement("span");
      fill.style.cssText = `position: absolute; left: 0; top: 0; bottom: 0; width: ${Math.round(100 * p)}%; ` +
        `background: ${name === face.label ? "rgb(40, 220, 90)" : "#999"};`;
      track.append(fill);
      const value = document.createElement("span");
      value.style.cssText = "width: 34px; text-align: right;";
      value.textContent = `${Math.round(100 * p)}%`;
      row.append(label, track, value);
      return row;
    }));
  }

  const capture = document.createElement("canvas"); // the downscaled frame sent to the kernel
  let stream = null;
  let running = false;
  let nextId = 0;
  const pending = new Map(); // id -> {resolve, timer} of each frame in flight
  let roundTrips = []; // end times of the last round trips, for fps
  let framesSent = 0;
  let results = 0;
  let last = null; // last result: {width, height, faces}

  function setState(state, message) {
    root.dataset.state = state;
    status.textContent = message;
    model.set("state", state);
    model.save_changes();
  }

  function fps() {
    if (roundTrips.length < 2) return 0;
    const seconds = (roundTrips[roundTrips.length - 1] - roundTrips[0]) / 1000;
    return seconds > 0 ? (roundTrips.length - 1) / seconds : 0;
  }

  function drawOverlay() {
    const width = video.videoWidth, height = video.videoHeight;
    if (!width || !height) return;
    if (overlay.width !== width) overlay.width = width;
    if (overlay.height !== height) overlay.height = height;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    if (!last || !last.faces) return;
    const scale = width / last.width; // boxes are in the pixels of the downscaled frame
    const line = Math.max(2, Math.round(width / 240));
    ctx.font = `${Math.max(12, Math.round(width / 30))}px sans-serif`;
    ctx.textBaseline = "bottom";
    for (const face of last.faces) {
      const [x, y, w, h] = face.box.map((v) => v * scale);
      ctx.strokeStyle = "rgb(40, 220, 90)";
      ctx.lineWidth = line;
      ctx.strokeRect(x, y, w, h);
      const text = `${face.label} ${Math.round(100 * face.confidence)}%`;
      const textWidth = ctx.measureText(text).width + 8;
      const textHeight = parseInt(ctx.font, 10) + 6;
      const top = y - textHeight >= 0 ? y - textHeight : y;
      ctx.fillStyle = "rgb(40, 220, 90)";
      ctx.fillRect(x, top, textWidth, textHeight);
      ctx.fillStyle = "black";
      ctx.fillText(text, x + 4, top + textHeight - 3);
    }
  }

  function onMessage(msg) {
    const waiting = msg && msg.type === "result" ? pending.get(msg.id) : undefined;
    if (!waiting) return;
    clearTimeout(waiting.timer);
    pending.delete(msg.id);
    waiting.resolve(msg);
  }
  model.on("msg:custom", onMessage);

  // The kernel's own counters (widget traits), shown beside the browser's.
  function showKernelStats() {
    root.dataset.kernelFrames = String(model.get("frames"));
    root.dataset.kernelLabels = (model.get("last_labels") || []).join(",");
  }
  model.on("change:frames", showKernelStats);

  function sendFrame() {
    const maxWidth = model.get("max_width") || 480;
    const scale = Math.min(1, maxWidth / video.videoWidth);
    capture.width = Math.max(1, Math.round(video.videoWidth * scale));
    capture.height = Math.max(1, Math.round(video.videoHeight * scale));
    capture.getContext("2d").drawImage(video, 0, 0, capture.width, capture.height);
    return new Promise((resolve) => {
      capture.toBlob(async (blob) => {
        const buffer = await blob.arrayBuffer();
        const id = nextId++;
        pending.set(id, { resolve, timer: setTimeout(() => { pending.delete(id); resolve(null); }, REPLY_TIMEOUT_MS) });
        framesSent += 1;
        root.dataset.framesSent = String(framesSent);
        model.send({ type: "frame", id, width: capture.width, height: capture.height }, undefined, [buffer]);
      }, "image/jpeg", model.get("jpeg_quality") || 0.8);
    });
  }

  function handleReply(reply) {
    if (!running) return;
    if (reply === null) {
      setState("waiting", "No answer from the kernel (busy, or restarted?); trying again.");
      return;
    }
    if (reply.error) {
      setState("error", `Kernel error: ${reply.error}`);
      return;
    }
    results += 1;
    last = reply;
    roundTrips.push(performance.now());
    if (roundTrips.length > FPS_WINDOW) roundTrips.shift();
    const rate = fps();
    const labels = reply.faces.map((f) => f.label);
    Object.assign(root.dataset, {
      results: String(results), faces: String(reply.faces.length),
      labels: labels.join(","), fps: rate.toFixed(2),
    });
    drawOverlay();
    showChart(reply.faces);
    status.textContent = `${rate.toFixed(1)} fps end to end · ${reply.faces.length} face(s)` +
      (labels.length ? `: ${labels.join(", ")}` : "") + ` · kernel ${Math.round(1000 * reply.seconds)} ms (${reply.detector})`;
    root.dataset.state = "running";
    if (results % FPS_WINDOW === 0) {
      model.set("fps", rate);
      model.save_changes();
    }
  }

  async function loop() {
    const inFlight = new Set();
    while (running) {
      if (video.readyState < 2 || !video.videoWidth) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      while (inFlight.size < MAX_IN_FLIGHT) {
        const trip = sendFrame().then(handleReply);
        inFlight.add(trip);
        trip.finally(() => inFlight.delete(trip));
      }
      await Promise.race(inFlight);
    }
  }

  async function start() {
    if (running) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      setState("error", "This page cannot open a camera (the browser needs https or localhost, and camera support).");
      return;
    }
    setState("starting", "Opening the camera (allow access when the browser asks)...");
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (error) {
      // VS Code's notebook view denies every page camera access (microsoft/vscode#119127).
      const hint = error.name === "NotAllowedError"
        ? " Allow camera access for this page, or open the notebook in JupyterLab or Colab (VS Code's notebook view gives no camera)."
        : "";
      setState("error", `No camera: ${error.name}: ${error.message}.${hint}`);
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    running = true;
    button.textContent = "Stop";
    setState("running", "Waiting for the first answer from the kernel...");
    loop();
  }

  function stop() {
    running = false;
    pending.forEach((waiting) => { clearTimeout(waiting.timer); waiting.resolve(null); });
    pending.clear();
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    video.srcObject = null;
    last = null;
    drawOverlay();
    button.textContent = "Start camera";
    setState("stopped", "Camera off.");
  }

  button.textContent = "Start camera";
  button.onclick = () => (running ? stop() : start());
  root.dataset.state = "idle";
  if (model.get("autostart")) start();

  return () => {
    model.off("msg:custom", onMessage);
    model.off("change:frames", showKernelStats);
    running = false;
    if (stream) stream.getTracks().forEach((track) => track.stop());
  };
}

export default { render };
