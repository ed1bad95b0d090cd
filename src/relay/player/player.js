"use strict";
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var te = new TextEncoder();
  var RS = 4096;
  function say(text, bad) {
    var s = $("status");
    s.textContent = text;
    s.className = bad ? "error" : "";
  }
  function b64url(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  // RFC 8188 aes128gcm with WebCrypto.
  async function keys(k, salt) {
    var ikm = await crypto.subtle.importKey("raw", k, "HKDF", false, ["deriveBits"]);
    var cek = await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: salt, info: te.encode("Content-Encoding: aes128gcm\0") }, ikm, 128);
    var nonce = new Uint8Array(await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: salt, info: te.encode("Content-Encoding: nonce\0") }, ikm, 96));
    var key = await crypto.subtle.importKey("raw", cek, "AES-GCM", false, ["encrypt", "decrypt"]);
    return { key: key, nonce: nonce };
  }
  function iv(nonce, seq) {
    var n = nonce.slice(), v = new DataView(n.buffer);
    v.setUint32(8, (v.getUint32(8) ^ seq) >>> 0);
    v.setUint32(4, (v.getUint32(4) ^ Math.floor(seq / 4294967296)) >>> 0);
    return n;
  }
  async function decrypt(k, body) {
    var b = new Uint8Array(body);
    if (b.length < 21) throw new Error("damaged");
    var salt = b.slice(0, 16), rs = new DataView(b.buffer, b.byteOffset).getUint32(16), start = 21 + b[20];
    if (rs < 18) throw new Error("damaged");
    var ks = await keys(k, salt), parts = [], seq = 0;
    for (var off = start; off < b.length; off += rs, seq++) {
      var rec = b.slice(off, Math.min(off + rs, b.length));
      var p = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: iv(ks.nonce, seq) }, ks.key, rec));
      var end = p.length;
      while (end > 0 && p[end - 1] === 0) end--;
      var last = off + rs >= b.length;
      if (end === 0 || p[end - 1] !== (last ? 2 : 1)) throw new Error("damaged");
      parts.push(p.subarray(0, end - 1));
    }
    return new Blob(parts);
  }
  async function encrypt(k, plain) {
    var salt = crypto.getRandomValues(new Uint8Array(16));
    var ks = await keys(k, salt), head = new Uint8Array(21);
    head.set(salt, 0);
    new DataView(head.buffer).setUint32(16, RS);
    var parts = [head], chunk = RS - 17, seq = 0, off = 0;
    for (;;) {
      var last = plain.length - off < chunk;
      var n = last ? plain.length - off : chunk;
      var rec = new Uint8Array(n + 1);
      rec.set(plain.subarray(off, off + n), 0);
      rec[n] = last ? 2 : 1;
      parts.push(new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: iv(ks.nonce, seq) }, ks.key, rec)));
      off += n; seq++;
      if (last) break;
    }
    return new Blob(parts);
  }

  var frag = location.hash.replace(/^#/, "").split(".");
  if (frag.length !== 4 || frag[0] !== "v1" || !/^[0-9a-f]{32}$/.test(frag[1])) {
    say("This link is incomplete. Ask for the whole link again.", true);
    return;
  }
  if (!window.crypto || !crypto.subtle) {
    say("This browser cannot open encrypted messages here. Try another browser.", true);
    return;
  }
  var sid = frag[1], K, mq;
  try { K = b64url(frag[2]); mq = new TextDecoder().decode(b64url(frag[3])); } catch (e) {
    say("This link is damaged. Ask for the whole link again.", true);
    return;
  }
  var base = location.origin + location.pathname.replace(/p\/[0-9a-f]{16}\/index\.html$/, "");
  function url(name, query) { return base + "s/" + sid + "/" + name + "?" + query; }
  var meta = null, usedKey = "hearth-reply-" + sid;

  async function get(name, query) {
    var r = await fetch(url(name, query), { cache: "no-store", credentials: "omit" });
    if (r.status === 403 || r.status === 404 || r.status === 400) throw new Error("gone");
    if (!r.ok) throw new Error("net");
    return decrypt(K, await r.arrayBuffer());
  }
  function failed(e) {
    if (e && e.message === "gone") say("This link has expired or was stopped. Ask for a new one.", true);
    else if (e && e.message === "damaged") say("This message could not be decrypted. Check that the link is complete.", true);
    else say("The message could not be loaded. Check your connection and reload the page.", true);
  }

  async function open() {
    try {
      var text = await (await get("m", mq)).text();
      meta = JSON.parse(text);
    } catch (e) { failed(e); return; }
    document.title = meta.title;
    $("title").textContent = meta.title;
    $("for").textContent = "For " + meta.contact;
    var until = new Date(meta.expires_at);
    $("until").textContent = "This link works until " + until.toLocaleString() + ".";
    $("player").hidden = false;
    say("Press play to listen.");
    if (freeSlot()) $("reply").hidden = false;
  }
  $("play").addEventListener("click", async function () {
    var a = $("audio");
    if (a.src) { a.play(); return; }
    $("play").disabled = true;
    say("Loading…");
    try {
      var ogg = a.canPlayType('audio/ogg; codecs="opus"') !== "";
      var blob = await get(ogg ? "a" : "w", ogg ? meta.audio.ogg : meta.audio.wav);
      a.src = URL.createObjectURL(new Blob([blob], { type: ogg ? "audio/ogg" : "audio/wav" }));
      a.hidden = false;
      say("Playing.");
      await a.play();
    } catch (e) { failed(e); }
    $("play").disabled = false;
  });

  // Replies: record (mono, resampled to 16 kHz), preview, encrypt, upload.
  function used() { try { return JSON.parse(localStorage.getItem(usedKey) || "[]"); } catch (e) { return []; } }
  function freeSlot() {
    var u = used();
    var s = (meta.replies || []).filter(function (r) { return u.indexOf(r.slot) < 0; });
    return s.length ? s[0] : null;
  }
  var rec = null, wav = null;
  function toWav(chunks, rate) {
    var n = 0; chunks.forEach(function (c) { n += c.length; });
    var ratio = rate / 16000, out = Math.floor(n / ratio), all = new Float32Array(n), o = 0;
    chunks.forEach(function (c) { all.set(c, o); o += c.length; });
    var buf = new ArrayBuffer(44 + out * 2), v = new DataView(buf);
    function str(off, s) { for (var i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i)); }
    str(0, "RIFF"); v.setUint32(4, 36 + out * 2, true); str(8, "WAVE"); str(12, "fmt ");
    v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, 16000, true); v.setUint32(28, 32000, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
    str(36, "data"); v.setUint32(40, out * 2, true);
    for (var i = 0; i < out; i++) {
      var a = Math.floor(i * ratio), b = Math.min(n, Math.floor((i + 1) * ratio)), s = 0;
      for (var j = a; j < b; j++) s += all[j];
      s = b > a ? s / (b - a) : 0;
      s = Math.max(-1, Math.min(1, s));
      v.setInt16(44 + i * 2, s < 0 ? s * 32768 : s * 32767, true);
    }
    return new Uint8Array(buf);
  }
  async function startRecording() {
    var stream;
    try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); } catch (e) {
      say("The microphone is not available. Allow it for this page and try again.", true);
      return;
    }
    var ctx = new AudioContext(), src = ctx.createMediaStreamSource(stream);
    if (ctx.state === "suspended") ctx.resume().catch(function () {});
    var node = ctx.createScriptProcessor(4096, 1, 1), chunks = [], started = Date.now();
    node.onaudioprocess = function (ev) { chunks.push(new Float32Array(ev.inputBuffer.getChannelData(0))); };
    src.connect(node); node.connect(ctx.destination);
    var timer = setInterval(function () {
      var s = Math.floor((Date.now() - started) / 1000);
      $("rec-time").textContent = "Recording: " + s + " s";
      if (Date.now() - started >= meta.max_reply_ms) stopRecording();
    }, 250);
    rec = { ctx: ctx, stream: stream, node: node, chunks: chunks, timer: timer };
    $("record").hidden = true; $("stop").hidden = false; $("preview").hidden = true;
    say("Recording… press Stop when you are done.");
  }
  function stopRecording() {
    if (!rec) return;
    var r = rec; rec = null;
    clearInterval(r.timer);
    r.node.disconnect();
    r.stream.getTracks().forEach(function (t) { t.stop(); });
    var rate = r.ctx.sampleRate;
    r.ctx.close();
    var samples = r.chunks.reduce(function (n, c) { return n + c.length; }, 0);
    if (samples < rate / 4) {
      // The browser's audio never ran (no samples came in): say so rather
      // than offer an empty reply.
      wav = null;
      $("stop").hidden = true; $("record").hidden = false; $("preview").hidden = true;
      say("No sound was recorded: this browser did not pass the microphone's sound to the page. Try again, or open the link in another browser.", true);
      return;
    }
    wav = toWav(r.chunks, rate);
    $("preview-audio").src = URL.createObjectURL(new Blob([wav], { type: "audio/wav" }));
    $("stop").hidden = true; $("record").hidden = false; $("preview").hidden = false;
    $("record").textContent = "● Record again";
    say("Listen to your reply, then press Send reply.");
  }
  $("record").addEventListener("click", startRecording);
  $("again").addEventListener("click", startRecording);
  $("stop").addEventListener("click", stopRecording);
  $("send").addEventListener("click", async function () {
    var slot = freeSlot();
    if (!wav || !slot) return;
    $("send").disabled = true;
    say("Sending…");
    try {
      var body = await encrypt(K, wav);
      var r = await fetch(url("r" + slot.slot, slot.put), { method: "PUT", body: body, credentials: "omit", headers: { "Content-Type": "application/octet-stream" } });
      if (r.status === 403) throw new Error("gone");
      if (!r.ok) throw new Error("net");
      var u = used(); u.push(slot.slot);
      try { localStorage.setItem(usedKey, JSON.stringify(u)); } catch (e) { /* private mode */ }
      wav = null;
      $("preview").hidden = true;
      say("Your reply was sent. The family will hear it once a parent has listened to it.");
      if (!freeSlot()) $("reply").hidden = true;
    } catch (e) {
      if (e && e.message === "gone") say("This link has expired or was stopped: the reply could not be sent.", true);
      else say("The reply could not be sent. Check your connection and press Send again.", true);
    }
    $("send").disabled = false;
  });
  open();
})();
