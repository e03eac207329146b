// The HTTP API as the console uses it: form posts answering JSON with a returncode (see docs/API.md).

export const RESULT_WORDS = {
  [-1]: "Could not reach the server",
  0: "Done",
  20001: "Wrong username or secret key",
  20002: "A field is missing or not valid",
  20003: "This channel does not exist",
  20004: "This channel belongs to another user",
  20005: "No image file was sent",
  20006: "The file is too large (bytes or pixels)",
  20007: "Not a JPEG or PNG image, or the file is damaged",
  20010: "Identifier not valid: use 3 to 50 letters, digits, @, _ or .",
  20012: "The channel is full: its quota is reached",
  20013: "Too little texture to be recognised",
  20014: "No target with this identifier",
  20015: "The server is busy; try again in a moment",
  20016: "This identifier is already used in the channel",
};

export function describe(code) {
  return RESULT_WORDS[code] || `Unexpected result code ${code}`;
}

export class ApiError extends Error {
  constructor(code, message) {
    // 20002, 20005 and 20006 come with the server's reason after ": " (which field, which limit).
    const reason = typeof message === "string" && message.includes(": ") ? message.slice(message.indexOf(": ") + 2) : "";
    super(reason ? `${describe(code)}: ${reason}` : describe(code));
    this.code = code;
    this.serverMessage = message;
  }
}

const STORAGE_KEY = "imagecloud.credentials";

export function credentials() {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
  } catch {
    return null;
  }
}

export function saveCredentials(value) {
  if (value) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(STORAGE_KEY);
}

/**
 * POST ``fields`` (plus ``file`` in field "image") to ``endpoint`` with the saved credentials.
 * Resolves with the body on returncode 0 and rejects with ApiError otherwise. XMLHttpRequest rather than
 * fetch because only it reports upload progress.
 */
export function call(endpoint, fields = {}, { file = null, onProgress = null, auth = credentials() } = {}) {
  const form = new FormData();
  if (auth) {
    form.append("username", auth.username);
    form.append("secretkey", auth.secretkey);
  }
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined && value !== null) form.append(key, value);
  }
  if (file) form.append("image", file, file.name || "image.jpg");
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/${endpoint}`);
    xhr.responseType = "json";
    if (onProgress) xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      const body = xhr.response;
      if (xhr.status !== 200 || !body || typeof body.returncode !== "number") {
        reject(new ApiError(-1, `HTTP ${xhr.status}`));
      } else if (body.returncode !== 0) {
        reject(new ApiError(body.returncode, body.message));
      } else {
        resolve(body);
      }
    };
    xhr.onerror = () => reject(new ApiError(-1, "network error"));
    xhr.send(form);
  });
}

export function thumbnailUrl(imageurl, size = 256) {
  return `${imageurl}/thumbnail?size=${size}`;
}
