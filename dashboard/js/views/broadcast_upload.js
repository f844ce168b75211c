// An audio file sent to POST /api/v1/media as soon as it is picked. The server reads its format and
// duration from the bytes (mutagen); what it refuses is said in the page's words.

import { ApiError } from "../api.js";
import { fmtNumber, t } from "../i18n.js";
import { MAX_MEDIA_BYTES, refusalText } from "./broadcast_words.js";

// Types the server takes as claimed; a type the browser guessed otherwise (or none) is not sent, so
// the server goes by what the file is.
const AUDIO_TYPES = ["audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/ogg"];

// {media: {id, duration_s, sha256, content_type, name}, text} when stored, {error: text} when not.
export async function uploadAudio(file) {
  if (file.size > MAX_MEDIA_BYTES) return { error: t("bc.err_too_large", { name: file.name }) };
  const body = new FormData();
  body.append("file", new File([file], file.name, { type: AUDIO_TYPES.includes(file.type) ? file.type : "application/octet-stream" }));
  let res;
  let data;
  try {
    res = await fetch("/api/v1/media", { method: "POST", body, credentials: "same-origin", headers: { Accept: "application/json" } });
    data = await res.json().catch(() => null);
  } catch (err) {
    return { error: refusalText(new ApiError(0, "network", String(err))) };
  }
  if (res.ok) {
    const type = data.content_type.replace("audio/", "").toUpperCase();
    return { media: { ...data, name: file.name }, text: t("bc.uploaded", { name: file.name, s: fmtNumber(data.duration_s, 1), type }) };
  }
  const msg = (data && data.error && data.error.message) || "";
  if (res.status === 413) return { error: t("bc.err_too_large", { name: file.name }) };
  if (res.status === 422) return { error: t(/no duration/.test(msg) ? "bc.err_no_duration" : "bc.err_not_audio", { name: file.name }) };
  return { error: refusalText(new ApiError(res.status, (data && data.error && data.error.code) || "", msg)) };
}
