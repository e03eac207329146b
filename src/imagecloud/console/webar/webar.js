// imagecloud WebAR demo: the reference for calling FindImage from a browser.
//
// 1. open the camera (getUserMedia);
// 2. a few times per second, draw the current frame downscaled onto a canvas and POST it to /FindImage
//    as multipart/form-data, never with more than one request in flight;
// 3. when a target comes back, draw its `corners` (pixels of the frame we sent) and show its metadata.
//
// Sign in with an app key (`imagecloud appkey create USER NAME`, or the console's Integrate page): it can
// only search, so it is safe in a page anyone can read. It goes in FindImage's `secretkey` field.
// Credentials come from the form, or from the URL fragment: webar/#username=…&appkey=…&channel=…
// (the fragment never leaves the browser). Add &autostart=1 to start the camera straight away.

const SEND_LONG_SIDE = 480; // plenty for recognition, small to upload
const INTERVAL_MS = 250; // at most 4 searches per second

const video = document.getElementById("video");
const overlay = document.getElementById("overlay");
const outline = document.getElementById("outline");
const card = document.getElementById("card");
const status = document.getElementById("status");
const form = document.getElementById("settings");
const stopButton = document.getElementById("stop");
const canvas = document.createElement("canvas");

let inFlight = false;
let timer = null;

async function start(auth) {
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  await video.play();
  status.textContent = "Point the camera at a target…";
  stopButton.hidden = false;
  timer = setInterval(() => { if (!inFlight) search(auth); }, INTERVAL_MS);
}

function stop() {
  clearInterval(timer);
  timer = null;
  for (const track of video.srcObject ? video.srcObject.getTracks() : []) track.stop();
  video.srcObject = null;
  clear();
  stopButton.hidden = true;
  form.hidden = false;
  status.textContent = "Camera stopped.";
}

function clear() {
  outline.setAttribute("points", "");
  delete outline.dataset.identifier;
  card.hidden = true;
}

async function search(auth) {
  if (!video.videoWidth) return;
  inFlight = true;
  try {
    const scale = Math.min(1, SEND_LONG_SIDE / Math.max(video.videoWidth, video.videoHeight));
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const frame = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.8));

    const body = new FormData();
    body.append("username", auth.username);
    body.append("secretkey", auth.appkey); // an app key travels in the vendor's secretkey field
    if (auth.channel) body.append("channel", auth.channel);
    body.append("image", frame, "frame.jpg");
    const answer = await (await fetch("/FindImage", { method: "POST", body })).json();
    if (timer !== null) show(answer, canvas.width, canvas.height); // not after Stop
  } catch (error) {
    status.textContent = `Network error: ${error.message}`;
  } finally {
    inFlight = false;
  }
}

function show(answer, width, height) {
  if (answer.returncode !== 0 || !answer.identifier) {
    // 20013 just means this frame had too little detail (e.g. a blank wall): keep looking.
    clear();
    status.textContent = answer.returncode === 0 || answer.returncode === 20013
      ? "Searching…" : `FindImage returned ${answer.returncode}: ${answer.message}`;
    return;
  }
  // The overlay uses the sent frame's pixel coordinates and the same "contain" fit as the video.
  overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  outline.setAttribute("points", answer.corners.map(([x, y]) => `${x},${y}`).join(" "));
  outline.dataset.identifier = answer.identifier;
  // textContent, never innerHTML: metadata is whatever the target's owner stored.
  document.getElementById("card-title").textContent = `${answer.identifier} (score ${Math.round(answer.score * 100)}%)`;
  document.getElementById("card-metadata").textContent = answer.metadata ?? "";
  card.hidden = false;
  status.textContent = `Found ${answer.identifier} in ${answer.channel}`;
}

function credentialsFrom(params) {
  return { username: params.get("username") || "", appkey: params.get("appkey") || "", channel: params.get("channel") || "" };
}

const fromUrl = new URLSearchParams(location.hash.slice(1));
for (const [name, value] of Object.entries(credentialsFrom(fromUrl))) form.elements[name].value = value;
form.addEventListener("submit", (event) => {
  event.preventDefault();
  form.hidden = true;
  start(credentialsFrom(new FormData(form))).catch((error) => {
    form.hidden = false;
    status.textContent = `Camera unavailable: ${error.message}`;
  });
});
stopButton.addEventListener("click", stop);
if (fromUrl.get("autostart") === "1") form.requestSubmit();
