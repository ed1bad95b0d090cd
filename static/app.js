// Hearth page script: sign out, toys and pairing, a toy's conversation
// (live bubbles, playback, recording), the home page's new recordings and
// the account page. Vanilla JS, no libraries; the CSP allows no inline code,
// so every style change goes through classes or the CSSOM.
'use strict';

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const csrfMeta = $('meta[name="csrf-token"]');
  const CSRF = csrfMeta ? csrfMeta.content : '';
  const MAX_SECONDS = 120;
  const AUDIO_START_MS = 5000;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  // ---- status messages ---------------------------------------------------
  // A message appears next to the control that caused it (on a phone the
  // top of the page may be far out of view), in a live region so screen
  // readers announce it. News that no control caused (a live event) uses
  // the page's #status line. `near` is the control; left out, it is the
  // control the user last used (within a minute); null means #status.
  let lastControl = null;
  let lastControlAt = 0;
  for (const type of ['click', 'submit', 'change', 'keydown']) {
    document.addEventListener(type, (ev) => {
      if (type === 'keydown' && ev.key !== 'Enter' && ev.key !== ' ') return;
      const c = ev.target && ev.target.closest && ev.target.closest('button, input, select, textarea, form');
      if (c) { lastControl = c; lastControlAt = Date.now(); }
    }, true);
  }
  function statusSpot(near) {
    const anchor = near.closest('[data-status-anchor]') || near.closest('form') || near.closest('.actions') || near;
    const next = anchor.nextElementSibling;
    if (next && next.classList.contains('local-status')) return { spot: next, fresh: false };
    const spot = el('p', { class: 'status local-status', role: 'status', 'aria-live': 'polite' });
    anchor.after(spot);
    return { spot, fresh: true };
  }
  const statusTimers = new Map();
  let shownSpot = null;
  // The page may move under a message just shown (a new bubble, a preview
  // gone): bring it back into view, no further than needed.
  function keepStatusInView() {
    if (shownSpot && shownSpot.isConnected && shownSpot.textContent && shownSpot.scrollIntoView) {
      shownSpot.scrollIntoView({ block: 'nearest' });
    }
  }
  function status(msg, kind, near) {
    if (near === undefined) {
      near = lastControl && Date.now() - lastControlAt < 60000 ? lastControl : null;
    }
    if (near && !near.isConnected) near = null;
    const global = $('#status');
    const { spot, fresh } = near ? statusSpot(near) : { spot: global, fresh: false };
    if (!spot) return;
    // One message at a time: the others are cleared.
    for (const o of $$('.status')) {
      if (o === spot) continue;
      o.textContent = '';
      o.classList.remove('is-error', 'is-ok');
    }
    const show = () => {
      spot.textContent = msg || '';
      spot.classList.toggle('is-error', kind === 'error');
      spot.classList.toggle('is-ok', kind === 'ok');
      spot.setAttribute('aria-live', kind === 'error' ? 'assertive' : 'polite');
      // The page may have moved under it (a new bubble, a preview gone):
      // bring it into view, no further than needed.
      shownSpot = msg && spot !== global ? spot : null;
      keepStatusInView();
    };
    // A live region added to the page is announced only when it changes
    // after it is there.
    if (fresh) setTimeout(show, 50); else show();
    clearTimeout(statusTimers.get(spot));
    if (msg && kind !== 'error') statusTimers.set(spot, setTimeout(() => {
      spot.textContent = '';
      if (shownSpot === spot) shownSpot = null;
    }, 8000));
  }

  function errorText(data, fallback) {
    if (data && data.error && data.error.message) return data.error.message;
    return fallback || 'Something went wrong. Please try again.';
  }

  // ---- styled dialogs ----------------------------------------------------
  // ask({ title, text, confirm, danger }) resolves true when confirmed and
  // false when cancelled (Cancel, or Escape). It is the page's one
  // confirmation: a native <dialog> opened with showModal(), so the rest of
  // the page is inert while it is open, Tab stays inside, Escape cancels,
  // and focus goes back to the control that opened it. Cancel has the
  // focus first: Enter alone never destroys anything.
  let askDialog = null;
  function ask(o) {
    if (!askDialog) {
      askDialog = el('dialog', { class: 'ask', 'aria-labelledby': 'ask-h', 'aria-describedby': 'ask-text', 'data-ask': true },
        el('h2', { id: 'ask-h' }),
        el('p', { id: 'ask-text' }),
        el('form', { method: 'dialog', class: 'actions ask-actions' },
          el('button', { type: 'submit', value: 'cancel', class: 'secondary', 'data-ask-cancel': true, text: 'Cancel' }),
          el('button', { type: 'submit', value: 'confirm', 'data-ask-confirm': true })));
      ($('main') || document.body).append(askDialog);
    }
    if (askDialog.open) askDialog.close();
    $('#ask-h', askDialog).textContent = o.title;
    $('#ask-text', askDialog).textContent = o.text || '';
    const go = $('[data-ask-confirm]', askDialog);
    go.textContent = o.confirm || 'OK';
    go.classList.toggle('danger-solid', o.danger !== false);
    return new Promise((resolve) => {
      askDialog.returnValue = '';
      askDialog.addEventListener('close', () => resolve(askDialog.returnValue === 'confirm'), { once: true });
      askDialog.showModal();
      $('[data-ask-cancel]', askDialog).focus();
    });
  }

  // ---- compact menus -----------------------------------------------------
  // A bubble shows Play, and its other actions behind "More": a disclosure
  // button (aria-expanded, aria-controls) whose panel follows it, so Tab
  // walks into it. Escape closes it and puts focus back on the button; a
  // click elsewhere closes it; one is open at a time.
  function menuPanel(b) {
    return document.getElementById(b.getAttribute('aria-controls'));
  }
  function setMenu(b, open) {
    b.setAttribute('aria-expanded', open ? 'true' : 'false');
    const p = menuPanel(b);
    if (p) p.hidden = !open;
    // Out from under the record bar (html's scroll-padding-bottom).
    if (open && p && p.scrollIntoView) p.scrollIntoView({ block: 'nearest' });
  }
  function closeMenus(except) {
    for (const b of $$('[data-menu][aria-expanded="true"]')) if (b !== except) setMenu(b, false);
  }
  document.addEventListener('click', (ev) => {
    const t = ev.target;
    if (!t || !t.closest) return;
    const b = t.closest('[data-menu]');
    if (b) {
      closeMenus(b);
      setMenu(b, b.getAttribute('aria-expanded') !== 'true');
    } else if (!t.closest('[data-menu-panel]') && !t.closest('dialog')) {
      closeMenus();
    }
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || (ev.target.closest && ev.target.closest('dialog'))) return;
    const b = $('[data-menu][aria-expanded="true"]');
    if (!b) return;
    const p = menuPanel(b);
    const inside = document.activeElement === b || (p && p.contains(document.activeElement));
    setMenu(b, false);
    if (inside) b.focus();
  });

  // ---- API ---------------------------------------------------------------
  async function api(method, path, body) {
    const opts = { method, headers: { 'X-CSRF-Token': CSRF, Accept: 'application/json' }, credentials: 'same-origin' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      return { ok: false, status: 0, data: { error: { code: 'network', message: 'The hub cannot be reached. Check the Wi-Fi and try again.' } } };
    }
    let data = null;
    const ct = res.headers.get('content-type') || '';
    if (ct.includes('json')) {
      try { data = await res.json(); } catch (e) { data = null; }
    }
    if (res.status === 401 && !path.endsWith('/logout') && !path.endsWith('/password')) {
      location.assign('/login');
    }
    return { ok: res.ok, status: res.status, data };
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  // ---- time formatting ---------------------------------------------------
  function fmtTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }
  function fmtDate(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    return d.toLocaleDateString(undefined, { dateStyle: 'medium' });
  }
  // Bubbles say when in words relative to today, in the browser's own time
  // zone and language: "today 10:57", "yesterday 18:02", else a short date
  // ("3 Nov, 09:15"); the full date is the time element's title. The
  // timeline's day separators say "Today", "Yesterday", a weekday for the
  // last week, else the date.
  function startOfDay(d) {
    return new Date(d.getFullYear(), d.getMonth(), d.getDate());
  }
  // Whole calendar days from `d` to `now` (rounded: a day with a clock
  // change is 23 or 25 hours long).
  function daysAgo(d, now) {
    return Math.round((startOfDay(now) - startOfDay(d)) / 86400000);
  }
  function clockTime(d) {
    return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  }
  function relTime(iso, now) {
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    now = now || new Date();
    const n = daysAgo(d, now);
    if (n === 0) return 'today ' + clockTime(d);
    if (n === 1) return 'yesterday ' + clockTime(d);
    return d.toLocaleDateString(undefined, { day: 'numeric', month: 'short',
      year: d.getFullYear() === now.getFullYear() ? undefined : 'numeric' }) + ', ' + clockTime(d);
  }
  function dayLabel(iso, now) {
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    now = now || new Date();
    const n = daysAgo(d, now);
    if (n === 0) return 'Today';
    if (n === 1) return 'Yesterday';
    if (n > 1 && n < 7) return d.toLocaleDateString(undefined, { weekday: 'long' });
    return d.toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long',
      year: d.getFullYear() === now.getFullYear() ? undefined : 'numeric' });
  }
  function prettifyTimes(root) {
    for (const t of $$('time[datetime]', root)) {
      const dt = t.getAttribute('datetime');
      if (t.hasAttribute('data-when')) {
        t.textContent = relTime(dt);
        t.title = fmtTime(dt);
      } else t.textContent = t.closest('[data-expiry]') ? fmtDate(dt) : fmtTime(dt);
    }
  }
  // A timeline's day separators, made again from its bubbles' times after
  // every change: <li class="day"> before the first bubble of each day.
  function relabelDays(list) {
    for (const s of $$(':scope > li.day', list)) s.remove();
    const now = new Date();
    let prev = null;
    for (const li of $$(':scope > li.bubble', list)) {
      const t = $('time[data-when]', li);
      const d = t && new Date(t.getAttribute('datetime'));
      if (!d || isNaN(d)) continue;
      const key = startOfDay(d).getTime();
      if (key === prev) continue;
      prev = key;
      li.before(el('li', { class: 'day', 'data-day': t.getAttribute('datetime') },
        el('span', { text: dayLabel(t.getAttribute('datetime'), now) })));
    }
  }
  // Runs `fn` just after every local midnight: "today" becomes "yesterday".
  function atMidnight(fn) {
    const now = new Date();
    const next = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1, 0, 0, 5);
    setTimeout(() => { fn(); atMidnight(fn); }, next - now);
  }
  // Exposed for tests that check the wording with known dates.
  window.hearthTime = { relTime, dayLabel };

  // ---- live events -------------------------------------------------------
  const handlers = {};
  function onEvent(kind, fn) {
    (handlers[kind] = handlers[kind] || []).push(fn);
  }
  function startEvents() {
    if (!CSRF || !window.EventSource || Object.keys(handlers).length === 0) return;
    const es = new EventSource('/api/v1/events');
    for (const kind of Object.keys(handlers)) {
      es.addEventListener(kind, (ev) => {
        let data = null;
        try { data = JSON.parse(ev.data); } catch (e) { return; }
        for (const fn of handlers[kind]) fn(data);
      });
    }
    es.addEventListener('resync', () => { for (const fn of handlers.resync || []) fn(); });
    window.addEventListener('pagehide', () => es.close());
  }

  // ---- unread counts (per member) ---------------------------------------
  // The menu, the toy cards and the toy page show how many children's
  // recordings this member has not heard: [data-unread-total] and
  // [data-unread-toy="id"], each with a [data-n] number, hidden at 0. They
  // are fetched again when a recording arrives or goes (event: message),
  // when this member hears one elsewhere (event: unread), and on resync.
  let unreadNow = null;
  function unreadNode(toyId) {
    return el('span', { class: 'unread', 'data-unread-toy': toyId, hidden: true }, ' ',
      el('span', { class: 'count', 'data-n': true, text: '0' }),
      el('span', { class: 'vh', text: ' unheard' }));
  }
  function showCount(node, n) {
    const num = $('[data-n]', node);
    if (num) num.textContent = String(n);
    node.hidden = !(n > 0);
  }
  function applyUnread() {
    if (!unreadNow) return;
    for (const n of $$('[data-unread-total]')) showCount(n, unreadNow.total);
    const per = {};
    for (const t of unreadNow.toys || []) per[t.toy_id] = t.unread;
    for (const n of $$('[data-unread-toy]')) showCount(n, per[n.dataset.unreadToy] || 0);
  }
  let unreadTimer = null;
  function fetchUnread() {
    if (!CSRF || unreadTimer) return;
    unreadTimer = setTimeout(async () => {
      unreadTimer = null;
      const r = await api('GET', '/api/v1/unread');
      if (r.ok && r.data) { unreadNow = r.data; applyUnread(); }
    }, 150);
  }
  if ($('[data-unread-total]')) {
    onEvent('message', fetchUnread);
    onEvent('unread', fetchUnread);
    onEvent('toy', fetchUnread);
    onEvent('resync', fetchUnread);
  }
  for (const b of $$('[data-mark-heard]')) {
    b.addEventListener('click', async () => {
      const toy = b.dataset.markHeard;
      b.disabled = true;
      const r = await api('POST', toy ? '/api/v1/toys/' + encodeURIComponent(toy) + '/heard' : '/api/v1/heard');
      b.disabled = false;
      if (r.ok && r.data) {
        unreadNow = r.data;
        applyUnread();
        for (const fn of handlers.unread || []) fn({ toy_id: toy || null });
        status(r.data.marked === 1 ? 'One recording marked as heard.'
          : r.data.marked > 1 ? r.data.marked + ' recordings marked as heard.'
          : 'Nothing new to mark for ' + (b.dataset.toyName || 'this toy') + '.', 'ok');
      } else status(errorText(r.data, 'They could not be marked as heard.'), 'error');
    });
  }

  // ---- sign out ----------------------------------------------------------
  for (const b of $$('[data-logout]')) {
    b.addEventListener('click', async () => {
      b.disabled = true;
      await api('POST', '/api/v1/logout');
      location.assign('/login');
    });
  }

  // ---- first-run checklist (home page, admins) -------------------------
  // [data-checklist-mark] buttons tick the certificate item or hide the
  // list; the other items tick from the hub's own state on the next visit.
  const checklist = $('#checklist');
  if (checklist) {
    checklist.addEventListener('click', async (ev) => {
      const b = ev.target.closest('[data-checklist-mark]');
      if (!b) return;
      b.disabled = true;
      const mark = b.dataset.checklistMark;
      const r = await api('POST', '/api/v1/me/checklist', { mark });
      b.disabled = false;
      if (!r.ok) { status(errorText(r.data, 'That could not be saved.'), 'error', b); return; }
      const li = b.closest('li');
      if (mark === 'dismissed' || !li) {
        checklist.remove();
        status('The getting-started list is hidden.', 'ok');
        return;
      }
      li.classList.add('done');
      $('.tick', li).textContent = '✓';
      const state = $('.vh', li);
      if (state) state.textContent = ' (done)';
      const hint = b.closest('.hint');
      const done = $$('li', checklist).filter((x) => x.classList.contains('done')).length;
      const count = $('[data-checklist-count]', checklist);
      if (count) count.textContent = done + ' of 4 done.';
      if (hint) hint.remove();
      if (done === 4) { checklist.remove(); status('All done. Enjoy Hearth!', 'ok'); return; }
      status('Ticked.', 'ok', count || undefined);
    });
  }

  // ---- bubbles -----------------------------------------------------------
  const TICKS = {
    queued: ['✓', 'sent'],
    delivered: ['✓✓', 'delivered'],
    played: ['✓✓', 'played'],
  };

  function renderTicks(li, state) {
    const span = $('[data-ticks]', li);
    if (!span) return;
    span.textContent = '';
    const t = TICKS[state];
    if (t) {
      span.append(el('span', { class: 'tick', 'aria-hidden': 'true', text: t[0] }));
      if (state === 'played') span.append(' ', el('span', { text: 'played' }));
      else span.append(el('span', { class: 'vh', text: t[1] }));
    } else if (state === 'heard') {
      span.append(el('span', { class: 'vh', text: 'heard' }));
    }
    span.classList.toggle('played', state === 'played');
  }

  // A message's state only moves forward (queued, delivered, played; for a
  // recording received, heard): an answer fetched before a change must not
  // undo the change an event already showed.
  const RANK = { queued: 1, delivered: 2, played: 3, received: 1, heard: 2 };
  function setBubbleState(li, state) {
    const was = li.dataset.state;
    if (was && RANK[was] && RANK[state] && RANK[state] < RANK[was]) return;
    li.dataset.state = state;
    renderTicks(li, state);
    const badge = $('.badge.new', li);
    if (li.dataset.unheard === 'true') {
      if (!badge) $('.meta', li).append(' ', el('span', { class: 'badge new', text: 'new' }));
    } else if (badge) {
      badge.remove();
    }
  }

  function drawWave(canvas) {
    const peaks = (canvas.dataset.peaks || '').split(',').filter((s) => s !== '').map(Number);
    const ctx = canvas.getContext && canvas.getContext('2d');
    if (!ctx) return;
    const dpr = window.devicePixelRatio || 1;
    const cssW = canvas.clientWidth || 240;
    const cssH = canvas.clientHeight || 36;
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const color = getComputedStyle(canvas).color || '#333';
    ctx.fillStyle = color;
    const n = peaks.length || 1;
    const slot = cssW / n;
    const barW = Math.max(1, slot * 0.6);
    for (let i = 0; i < peaks.length; i++) {
      const v = Math.max(0, Math.min(255, peaks[i] || 0)) / 255;
      const h = Math.max(2, v * (cssH - 2));
      ctx.fillRect(i * slot + (slot - barW) / 2, (cssH - h) / 2, barW, h);
    }
  }

  function expiryNode(m) {
    const p = el('p', { class: 'hint', 'data-expiry': true });
    if (m.keep) p.textContent = 'Kept until you delete it.';
    else if (!m.expires_at) p.textContent = 'Kept forever.';
    else p.append('Disappears ', el('time', { datetime: m.expires_at, text: fmtDate(m.expires_at) }), '.');
    return p;
  }

  // The one bubble is templates/bubble.html, rendered empty into
  // <template id="bubble-template">; live messages get a filled clone.
  const bubbleTemplate = document.getElementById('bubble-template');
  function buildBubble(m) {
    const li = bubbleTemplate.content.firstElementChild.cloneNode(true);
    li.className = 'bubble ' + m.direction;
    li.id = 'msg-' + m.id;
    li.dataset.id = m.id;
    $('.meta strong', li).textContent = m.from || '';
    // A child's recording shows its toy's picture, as the page shows it.
    const pic = m.direction === 'from_toy' && $('img[data-toy-pic="' + CSS.escape(m.toy_id || '') + '"]');
    if (pic) {
      $('.meta', li).prepend(el('img', { class: 'bubble-pic', src: pic.getAttribute('src'), alt: '',
        width: '28', height: '28', 'data-bubble-pic': m.toy_id }), ' ');
    }
    const time = $('.meta time', li);
    time.setAttribute('datetime', m.created_at);
    time.textContent = relTime(m.created_at);
    time.title = fmtTime(m.created_at);
    const more = $('[data-menu]', li);
    if (more) {
      more.setAttribute('aria-controls', 'menu-' + m.id);
      $('[data-menu-panel]', li).id = 'menu-' + m.id;
    }
    $('[data-duration]', li).textContent = ((m.duration_ms || 0) / 1000).toFixed(1);
    $('canvas.wave', li).dataset.peaks = (m.peaks || []).join(',');
    // A relative's bubbles have no Keep or Delete.
    for (const action of ['play', 'keep', 'share', 'delete']) {
      const b = $('[data-' + action + ']', li);
      if (b) b.setAttribute('data-' + action, m.id);
    }
    const keep = $('[data-keep]', li);
    if (keep) {
      keep.setAttribute('aria-pressed', m.keep ? 'true' : 'false');
      keep.textContent = m.keep ? 'Kept' : 'Keep';
    }
    $('[data-expiry]', li).replaceWith(expiryNode(m));
    li.dataset.unheard = String(m.heard_by_me === false);
    setBubbleState(li, m.state);
    return li;
  }

  function updateBubble(li, m) {
    // Events and lists carry this member's own heard state; without it the
    // bubble keeps what it showed.
    if ('heard_by_me' in m) li.dataset.unheard = String(m.heard_by_me === false);
    setBubbleState(li, m.state);
    const keep = $('[data-keep]', li);
    if (keep) {
      keep.setAttribute('aria-pressed', m.keep ? 'true' : 'false');
      keep.textContent = m.keep ? 'Kept' : 'Keep';
    }
    const old = $('[data-expiry]', li);
    if (old && ('expires_at' in m)) old.replaceWith(expiryNode(m));
    const canvas = $('canvas.wave', li);
    if (canvas && Array.isArray(m.peaks) && m.peaks.length) {
      canvas.dataset.peaks = m.peaks.join(',');
      drawWave(canvas);
    }
  }

  function syncEmpty(list) {
    const emptyId = list.dataset.empty;
    const empty = emptyId && document.getElementById(emptyId);
    const timeline = list.classList.contains('timeline');
    if (timeline) relabelDays(list);
    const n = timeline ? $$(':scope > li.bubble', list).length : list.children.length;
    if (empty) empty.hidden = n > 0;
  }

  // Timelines: #timeline (one toy, oldest first) and #new-recordings (home,
  // newest first, unheard recordings only).
  const player = new Audio();
  let playingBtn = null;
  const wantWav = player.canPlayType('audio/ogg; codecs=opus') === '';
  player.addEventListener('ended', () => stopPlaying());
  player.addEventListener('error', () => {
    if (playingBtn) status('This message could not be played.', 'error');
    stopPlaying();
  });
  function stopPlaying() {
    if (playingBtn) {
      playingBtn.textContent = 'Play';
      playingBtn.setAttribute('aria-pressed', 'false');
    }
    playingBtn = null;
  }

  function setupTimeline(list, opts) {
    list.dataset.empty = opts.emptyId;
    for (const c of $$('canvas.wave', list)) drawWave(c);
    for (const li of $$('li.bubble', list)) setBubbleState(li, li.dataset.state);
    prettifyTimes(list);
    syncEmpty(list);
    atMidnight(() => { prettifyTimes(list); relabelDays(list); });

    list.addEventListener('click', async (ev) => {
      const btn = ev.target.closest('button');
      if (!btn || !list.contains(btn)) return;
      const li = btn.closest('li.bubble');
      if (btn.dataset.play) {
        const id = btn.dataset.play;
        if (playingBtn === btn) { player.pause(); stopPlaying(); return; }
        stopPlaying();
        player.src = '/api/v1/messages/' + encodeURIComponent(id) + '/audio' + (wantWav ? '?format=wav' : '');
        playingBtn = btn;
        btn.textContent = 'Stop';
        btn.setAttribute('aria-pressed', 'true');
        try {
          await player.play();
          if (li && li.dataset.unheard === 'true') {
            li.dataset.unheard = 'false';
            setBubbleState(li, li.dataset.state === 'received' ? 'heard' : li.dataset.state);
          }
        } catch (e) {
          status('This message could not be played.', 'error');
          stopPlaying();
        }
      } else if (btn.dataset.keep) {
        const keep = btn.getAttribute('aria-pressed') !== 'true';
        btn.disabled = true;
        const r = await api('PATCH', '/api/v1/messages/' + encodeURIComponent(btn.dataset.keep), { keep });
        btn.disabled = false;
        if (r.ok && r.data) { updateBubble(li, r.data); status(keep ? 'Kept: it will not disappear.' : 'No longer kept.', 'ok'); }
        else status(errorText(r.data), 'error');
      } else if (btn.dataset.share) {
        openShare(btn.dataset.share);
      } else if (btn.dataset.stopShare) {
        await stopShare(btn.dataset.stopShare, btn);
      } else if (btn.dataset.delete) {
        const mine = li && li.classList.contains('to_toy');
        if (!await ask({ title: 'Delete this message?', text: 'It is deleted for everyone in the family'
          + (mine ? ' and is not played on the toy' : '') + '. This cannot be undone.', confirm: 'Delete' })) return;
        btn.disabled = true;
        const r = await api('DELETE', '/api/v1/messages/' + encodeURIComponent(btn.dataset.delete));
        if (r.ok || r.status === 404) {
          if (li) li.remove();
          syncEmpty(list);
          status('Message deleted.', 'ok', list);
        } else {
          btn.disabled = false;
          status(errorText(r.data), 'error');
        }
      }
    });

    function upsert(m) {
      let li = document.getElementById('msg-' + m.id);
      if (m.deleted) {
        if (li && list.contains(li)) { li.remove(); syncEmpty(list); }
        return;
      }
      if (!opts.accepts(m)) {
        if (li && list.contains(li) && opts.removeWhenRejected) { li.remove(); syncEmpty(list); }
        return;
      }
      if (li) { updateBubble(li, m); return; }
      li = buildBubble(m);
      const follow = opts.onNewest && opts.onNewest.atEnd();
      if (opts.newestFirst) list.prepend(li); else list.append(li);
      if (follow) opts.onNewest.show();
      keepStatusInView();
      drawWave($('canvas.wave', li));
      syncEmpty(list);
      if (m.direction === 'from_toy') status('New recording from ' + (m.from || 'a toy') + '.', 'ok', null);
    }
    onEvent('message', upsert);
    async function refresh() {
      const q = opts.toy ? '?toy=' + encodeURIComponent(opts.toy) + '&limit=100' : '?limit=50';
      const r = await api('GET', '/api/v1/messages' + q);
      if (!r.ok || !r.data) return;
      const msgs = r.data.messages.slice().reverse();
      if (opts.newestFirst) msgs.forEach(upsert); else msgs.forEach(upsert);
      // How many list answers the page has applied (what a test waits for).
      list.dataset.refreshed = String((Number(list.dataset.refreshed) || 0) + 1);
    }
    onEvent('resync', refresh);
    // This member heard something elsewhere (another tab, Mark all heard).
    onEvent('unread', refresh);
    return { upsert, refresh };
  }

  const timeline = $('#timeline');
  let toyTimeline = null;
  // The toy page is a chat: it opens at the newest message (last), just
  // above the record bar, and follows new messages while the reader is
  // there.
  const newest = {
    // What covers the bottom of the screen: the record bar, and on phones
    // the tab bar under it.
    bar() {
      const r = $('[data-recorder]');
      const tabs = $('.tabbar');
      const tabH = tabs && getComputedStyle(tabs).display !== 'none' ? tabs.getBoundingClientRect().height : 0;
      return (r && !r.hidden ? r.getBoundingClientRect().height : 0) + tabH;
    },
    last() {
      return $$(':scope > li.bubble', timeline).pop();
    },
    atEnd() {
      const last = newest.last();
      return !last || last.getBoundingClientRect().top < window.innerHeight - newest.bar();
    },
    show() {
      const last = newest.last();
      if (!last) return;
      const bottom = last.getBoundingClientRect().bottom + window.scrollY;
      window.scrollTo(0, Math.max(0, bottom - (window.innerHeight - newest.bar() - 12)));
    },
  };
  if (timeline) {
    const toyId = timeline.dataset.toy;
    toyTimeline = setupTimeline(timeline, {
      emptyId: 'no-messages',
      toy: toyId,
      onNewest: newest,
      accepts: (m) => m.toy_id === toyId && m.direction !== 'from_contact',
    });
    if (!location.hash) {
      if ('scrollRestoration' in history) history.scrollRestoration = 'manual';
      newest.show();
      // Again once images and fonts have settled the layout.
      window.addEventListener('load', () => newest.show(), { once: true });
    }
  }
  const newRec = $('#new-recordings');
  if (newRec) {
    setupTimeline(newRec, {
      emptyId: 'no-new',
      newestFirst: true,
      removeWhenRejected: true,
      accepts: (m) => m.direction === 'from_toy' && m.heard_by_me === false,
    });
  }
  window.addEventListener('resize', () => { for (const c of $$('canvas.wave')) drawWave(c); });

  // ---- toy page: rename, remove -----------------------------------------
  const renameForm = $('[data-rename]');
  if (renameForm) {
    renameForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const name = renameForm.elements.name.value.trim();
      if (!name) return;
      const r = await api('PATCH', '/api/v1/toys/' + encodeURIComponent(renameForm.dataset.rename), { name });
      if (r.ok) {
        status('Renamed to ' + name + '.', 'ok');
        const h1 = $('main h1');
        if (h1) h1.textContent = (r.data && r.data.title) || name;
        const h2 = $('#rec-h');
        if (h2) h2.textContent = 'Send a message to ' + name;
        document.title = name + document.title.slice(document.title.indexOf(' ·'));
      } else status(errorText(r.data), 'error');
    });
  }
  // Another page (or another parent) removed this toy: the page stops
  // offering to record for it and says where its messages stay.
  if (timeline && !timeline.hasAttribute('data-removed')) {
    const toyId = timeline.dataset.toy;
    let removed = false;
    onEvent('toy', (d) => {
      if (!d || d.toy_id !== toyId || removed) return;
      const badge = $('[data-toy-badge]');
      if (d.change === 'removed') {
        removed = true;
        const recorder = $('[data-recorder]');
        const name = (recorder && recorder.dataset.toyName) || 'This toy';
        if (recorder) { recorder.dispatchEvent(new Event('hearth:removed')); recorder.hidden = true; }
        const manage = $('[data-settings]') || $('[data-manage]');
        if (manage) manage.hidden = true;
        if (badge) { badge.textContent = 'removed'; badge.className = 'badge off'; }
        const note = $('[data-removed-note]');
        if (note) {
          note.hidden = false;
          note.textContent = name + ' was removed from this hub: it can no longer send or receive messages. '
            + 'Its messages stay here until they expire; kept ones stay until you delete them.';
        }
      } else if (badge && (d.change === 'online' || d.change === 'offline')) {
        badge.textContent = d.change;
        badge.className = 'badge ' + (d.change === 'online' ? 'on' : 'off');
      }
    });
  }
  // The home page's toy cards leave when a toy is removed.
  const homeToys = $('#home-toys');
  if (homeToys) {
    onEvent('toy', (d) => {
      if (!d || d.change !== 'removed' || !d.toy_id) return;
      for (const li of $$('li[data-toy]', homeToys)) if (li.dataset.toy === d.toy_id) li.remove();
    });
  }
  const childForm = $('[data-child]');
  if (childForm) {
    childForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const child = childForm.elements.child.value.trim();
      const btn = $('button[type="submit"]', childForm);
      btn.disabled = true;
      const r = await api('PATCH', '/api/v1/toys/' + encodeURIComponent(childForm.dataset.child), { child });
      btn.disabled = false;
      if (r.ok && r.data) {
        const h1 = $('main h1');
        if (h1) h1.textContent = r.data.title;
        document.title = r.data.title + document.title.slice(document.title.indexOf(' ·'));
        status(child ? 'Saved: shown as ' + r.data.title + '.' : 'The child\'s name was removed.', 'ok');
      } else status(errorText(r.data, 'The child\'s name could not be saved.'), 'error');
    });
  }
  const removeBtn = $('[data-remove]');
  if (removeBtn) {
    removeBtn.addEventListener('click', async () => {
      const name = removeBtn.dataset.name || 'this toy';
      if (!await ask({ title: 'Remove ' + name + '?', text: name + ' stops working until you pair it again. '
        + 'Its messages stay on its page until they expire; kept ones until you delete them.', confirm: 'Remove toy' })) return;
      removeBtn.disabled = true;
      const r = await api('DELETE', '/api/v1/toys/' + encodeURIComponent(removeBtn.dataset.remove));
      if (r.ok) location.assign('/toys');
      else { removeBtn.disabled = false; status(errorText(r.data), 'error'); }
    });
  }

  // ---- recorder ----------------------------------------------------------
  function encodeWav(chunks, rate) {
    let n = 0;
    for (const c of chunks) n += c.length;
    n = Math.min(n, Math.floor(rate * MAX_SECONDS));
    const buf = new ArrayBuffer(44 + n * 2);
    const v = new DataView(buf);
    const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
    str(0, 'RIFF'); v.setUint32(4, 36 + n * 2, true); str(8, 'WAVE');
    str(12, 'fmt '); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
    str(36, 'data'); v.setUint32(40, n * 2, true);
    let o = 44;
    let left = n;
    for (const c of chunks) {
      for (let i = 0; i < c.length && left > 0; i++, left--) {
        const s = Math.max(-1, Math.min(1, c[i]));
        v.setInt16(o, s < 0 ? s * 0x8000 : s * 0x7fff, true);
        o += 2;
      }
    }
    return new Blob([buf], { type: 'audio/wav' });
  }

  // The one rounding rule for a clip's length in m:ss: to the nearest
  // second, as the browsers' players show it (3.5 s reads 0:04 in both).
  function fmtSecs(s) {
    s = Math.round(s);
    return Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0');
  }
  // The elapsed time while recording counts whole seconds done.
  function fmtElapsed(s) {
    return fmtSecs(Math.floor(s));
  }
  // Resolves with `p`, or rejects after `ms` with `why`.
  function within(p, ms, why) {
    let t;
    return Promise.race([p, new Promise((_, reject) => { t = setTimeout(() => reject(new Error(why)), ms); })])
      .finally(() => clearTimeout(t));
  }

  const rec = $('[data-recorder]');
  if (rec) {
    const toyId = rec.dataset.recorder;
    const recBtn = $('[data-record]', rec);
    const timeEl = $('[data-rec-time]', rec);
    const preview = $('[data-preview]', rec);
    const sendBtn = $('[data-send]', rec);
    const discardBtn = $('[data-discard]', rec);
    const progress = $('[data-progress]', rec);
    const fileInput = $('[data-upload]', rec);
    const takeBox = $('.rec-actions', rec);
    const fileBox = $('.rec-file', rec);
    const toyName = rec.dataset.toyName || 'The toy';
    let session = null; // {stream, ctx, node, chunks, samples, rate, timer}
    let clip = null; // {blob, url, key, type}
    let uploading = false;

    function setClip(c) {
      if (clip && clip.url) URL.revokeObjectURL(clip.url);
      clip = c;
      if (c) {
        c.url = URL.createObjectURL(c.blob);
        preview.src = c.url;
        preview.hidden = false;
      } else {
        preview.removeAttribute('src');
        preview.hidden = true;
      }
      sendBtn.disabled = !c || uploading;
      discardBtn.disabled = !c || uploading;
      discardBtn.textContent = c && c.file ? 'Cancel' : 'Discard';
      // The bar offers Send and Discard after a take, "Send a file" before.
      const hadFocus = takeBox && takeBox.contains(document.activeElement);
      if (takeBox) takeBox.hidden = !c;
      if (fileBox) fileBox.hidden = !!c;
      if (hadFocus && !c) recBtn.focus();
    }

    async function start() {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
        status('This browser cannot record here. Send an audio file instead.', 'error');
        return;
      }
      setClip(null);
      timeEl.textContent = '';
      recBtn.disabled = true;
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
      } catch (e) {
        recBtn.disabled = false;
        status('The microphone is not available: allow it in the browser settings, or send a file.', 'error', recBtn);
        return;
      }
      let ctx = null;
      try {
        ctx = new AudioContext();
        // An audio context may never start (Firefox on a machine with no
        // sound output): give up after a few seconds and say so, rather
        // than leave Record waiting for ever.
        const NO_AUDIO = 'this device\'s sound system did not start (is a speaker or headphones connected?)';
        await within(ctx.audioWorklet.addModule('/static/recorder-worklet.js'), AUDIO_START_MS, NO_AUDIO);
        const src = ctx.createMediaStreamSource(stream);
        const node = new AudioWorkletNode(ctx, 'hearth-recorder', { numberOfOutputs: 1 });
        const s = { stream, ctx, node, src, chunks: [], samples: 0, rate: ctx.sampleRate, timer: null };
        node.port.onmessage = (e) => {
          if (session !== s) return;
          s.chunks.push(e.data);
          s.samples += e.data.length;
          if (s.samples >= s.rate * MAX_SECONDS) stop();
        };
        src.connect(node);
        node.connect(ctx.destination); // silent: the worklet writes no output
        if (ctx.state === 'suspended') await within(ctx.resume(), AUDIO_START_MS, NO_AUDIO);
        session = s;
        s.timer = setInterval(tick, 200);
        recBtn.classList.add('recording');
        recBtn.setAttribute('aria-pressed', 'true');
        recBtn.textContent = 'Stop';
        timeEl.textContent = 'Recording 0:00 of ' + fmtSecs(MAX_SECONDS);
        status('Recording… tap Stop when you are done.', undefined, recBtn);
      } catch (e) {
        stream.getTracks().forEach((t) => t.stop());
        if (ctx) ctx.close().catch(() => {});
        status('Recording could not start: ' + e.message + '. You can send an audio file instead.', 'error', recBtn);
      } finally {
        recBtn.disabled = false;
      }
    }

    function tick() {
      if (!session) return;
      timeEl.textContent = 'Recording ' + fmtElapsed(session.samples / session.rate) + ' of ' + fmtSecs(MAX_SECONDS);
    }

    function stop() {
      const s = session;
      if (!s) return;
      session = null;
      clearInterval(s.timer);
      s.stream.getTracks().forEach((t) => t.stop());
      try { s.src.disconnect(); s.node.disconnect(); } catch (e) { /* already gone */ }
      s.node.port.onmessage = null;
      s.ctx.close();
      recBtn.classList.remove('recording');
      recBtn.setAttribute('aria-pressed', 'false');
      recBtn.textContent = 'Record';
      const secs = s.samples / s.rate;
      if (s.samples < s.rate * 0.3) {
        timeEl.textContent = '';
        status('That was too short. Hold on a little longer.', 'error', recBtn);
        return;
      }
      const length = fmtSecs(Math.min(secs, MAX_SECONDS));
      timeEl.textContent = 'Recorded ' + length + '. Listen, then Send.';
      timeEl.dataset.seconds = String(Math.min(secs, MAX_SECONDS));
      setClip({ blob: encodeWav(s.chunks, s.rate), key: newKey(), type: 'audio/wav' });
      status('Recorded ' + length + '. Send it or discard it.', 'ok', recBtn);
    }

    function upload(c) {
      if (uploading) return;
      uploading = true;
      sendBtn.disabled = true;
      discardBtn.disabled = true;
      recBtn.disabled = true;
      progress.value = 0;
      progress.textContent = '0%';
      progress.hidden = false;
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/api/v1/toys/' + encodeURIComponent(toyId) + '/messages');
      xhr.setRequestHeader('Content-Type', c.type);
      xhr.setRequestHeader('X-CSRF-Token', CSRF);
      xhr.setRequestHeader('Idempotency-Key', c.key);
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) {
          const p = Math.round((e.loaded / e.total) * 100);
          progress.value = p;
          progress.textContent = p + '%';
        }
      };
      const done = (ok, msg) => {
        uploading = false;
        recBtn.disabled = false;
        progress.hidden = true;
        if (ok) {
          setClip(null);
          timeEl.textContent = '';
          status(msg, 'ok', sendBtn);
          if (toyTimeline) toyTimeline.refresh();
        } else {
          sendBtn.disabled = !clip;
          discardBtn.disabled = !clip;
          status(msg, 'error', sendBtn);
        }
      };
      xhr.onload = () => {
        let data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
        if (xhr.status >= 200 && xhr.status < 300) {
          done(true, data && data.quiet && data.quiet.note ? data.quiet.note
            : data && data.toy_online === false
            ? 'Sent. ' + toyName + ' is offline: it will get the message when it is next online.'
            : 'Sent. ' + toyName + ' will play it soon.');
        }
        else if (xhr.status === 401) location.assign('/login');
        else done(false, errorText(data, 'Sending failed (' + xhr.status + ').'));
      };
      xhr.onerror = () => done(false, 'Sending failed: the hub cannot be reached. Try again.');
      xhr.send(c.blob);
    }

    recBtn.addEventListener('click', () => { if (session) stop(); else start(); });
    sendBtn.addEventListener('click', () => { if (clip) upload(clip); });
    discardBtn.addEventListener('click', () => {
      const file = clip && clip.file;
      setClip(null);
      timeEl.textContent = '';
      status(file ? 'File not sent.' : 'Recording discarded.', undefined, recBtn);
    });
    rec.addEventListener('hearth:removed', () => { if (session) stop(); setClip(null); });
    if (fileInput) {
      fileInput.addEventListener('change', () => {
        const f = fileInput.files && fileInput.files[0];
        if (!f) return;
        let type = f.type;
        if (!/^audio\/(wav|x-wav|wave|ogg|opus)$/.test(type)) {
          if (/\.wav$/i.test(f.name)) type = 'audio/wav';
          else if (/\.(ogg|opus)$/i.test(f.name)) type = 'audio/ogg';
          else { status('Hearth cannot send this kind of file: choose a voice recording.', 'error', fileInput); fileInput.value = ''; return; }
        }
        if (f.size > 16 * 1024 * 1024) { status('That file is larger than 16 MiB.', 'error', fileInput); fileInput.value = ''; return; }
        // Previewed first: nothing is sent until Send.
        setClip({ blob: f, key: newKey(), type, file: true });
        fileInput.value = '';
        timeEl.textContent = 'File: ' + f.name + '. Listen, then Send.';
        const shown = () => {
          if (!clip || !clip.file || !isFinite(preview.duration)) return;
          timeEl.textContent = 'File: ' + f.name + ' (' + fmtSecs(preview.duration) + '). Listen, then Send.';
          timeEl.dataset.seconds = String(preview.duration);
        };
        preview.addEventListener('loadedmetadata', shown, { once: true });
        status('Listen to the file, then Send it or Cancel.', 'ok', sendBtn);
      });
    }
  }

  // ---- toys page ---------------------------------------------------------
  const pendingList = $('#pending-list');
  if (pendingList) {
    const foundList = $('#found-list');
    const pairedList = $('#paired-list');
    pendingList.dataset.empty = 'pending-empty';
    foundList.dataset.empty = 'found-empty';
    pairedList.dataset.empty = 'paired-empty';
    [pendingList, foundList, pairedList].forEach(syncEmpty);

    function pendingItem(p) {
      const inputId = 'code-' + p.pairing_id;
      const form = el('form', { class: 'pair-form', 'data-pairing': p.pairing_id },
        el('label', { for: inputId, text: 'Code shown by ' + p.name }),
        el('input', { id: inputId, name: 'code', inputmode: 'numeric', pattern: '[0-9]{6}', autocomplete: 'one-time-code', maxlength: '6', required: true, 'aria-describedby': 'hint-' + p.pairing_id }),
        el('div', { class: 'actions' },
          el('button', { type: 'submit', text: 'Confirm' }),
          el('button', { type: 'button', class: 'danger', 'data-reject': p.pairing_id, text: 'Reject' })));
      const hint = p.awaiting === 'reveal'
        ? 'Waiting for the toy to show its code…'
        : 'Type the 6-digit code the toy says or shows.';
      return el('li', { class: 'card', 'data-pairing': p.pairing_id },
        el('p', {}, el('strong', { text: p.name }), ' ', el('span', { class: 'hint', text: p.model || '' })),
        el('p', { class: 'hint', id: 'hint-' + p.pairing_id, 'data-attempts': true, 'aria-live': 'polite', text: hint }),
        form);
    }

    function foundItem(d) {
      return el('li', { class: 'card' },
        el('strong', { text: d.name }), ' ',
        el('span', { class: 'hint', text: (d.model ? d.model + ': ' : '') + 'switch it to pairing mode to pair it.' }));
    }

    function pairedItem(t) {
      const seen = t.last_seen ? 'last seen ' + fmtTime(t.last_seen) : 'never seen';
      const battery = t.battery === null || t.battery === undefined ? 'unknown' : t.battery + '%';
      return el('li', { class: 'card', 'data-toy': t.toy_id }, toyPicNode(t), ' ',
        el('a', { href: '/toys/' + encodeURIComponent(t.toy_id), text: t.title || t.name }), unreadNode(t.toy_id), ' ',
        el('span', { class: 'badge ' + (t.online ? 'on' : 'off'), text: t.online ? 'online' : 'offline' }), ' ',
        el('span', { class: 'hint', text: seen + ' · battery ' + battery }), batteryWarnNode(t));
    }

    function replaceList(list, items) {
      // Keep a pending form the user is typing in.
      const active = document.activeElement;
      const keep = {};
      if (list === pendingList) {
        for (const li of $$('li[data-pairing]', list)) keep[li.dataset.pairing] = li;
      }
      const next = items.map((it) => {
        if (list === pendingList && keep[it.pairing_id]) {
          const old = keep[it.pairing_id];
          const fresh = pendingItem(it);
          const hint = $('[data-attempts]', old);
          if (hint && !hint.classList.contains('is-error')) hint.textContent = $('[data-attempts]', fresh).textContent;
          return old;
        }
        return list === pendingList ? pendingItem(it) : list === foundList ? foundItem(it) : pairedItem(it);
      });
      list.replaceChildren(...next);
      if (active && list.contains(active)) active.focus();
      syncEmpty(list);
    }

    let loading = null;
    async function load() {
      if (loading) return loading;
      loading = (async () => {
        const r = await api('GET', '/api/v1/toys');
        if (!r.ok || !r.data) { status(errorText(r.data, 'The toys could not be loaded.'), 'error'); return; }
        replaceList(pendingList, r.data.pending || []);
        replaceList(foundList, (r.data.discovered || []).filter((d) => !d.paired));
        replaceList(pairedList, r.data.paired || []);
        applyUnread();
        fetchUnread();
      })();
      try { await loading; } finally { loading = null; }
    }

    pendingList.addEventListener('submit', async (ev) => {
      const form = ev.target.closest('form[data-pairing]');
      if (!form) return;
      ev.preventDefault();
      const id = form.dataset.pairing;
      const code = form.elements.code.value.replace(/\D/g, '');
      const hint = $('[data-attempts]', form.closest('li'));
      if (code.length !== 6) { status('The code has 6 digits.', 'error', form); form.elements.code.focus(); return; }
      const r = await api('POST', '/api/v1/pairings/' + encodeURIComponent(id) + '/confirm', { code });
      if (r.ok) {
        // The card goes away with the list's reload: say it at the top.
        status('Paired. The toy is ready.', 'ok', null);
        load();
      } else if (r.status === 422) {
        // Said once, in the card's own line (the code field's description,
        // announced as it changes), in words of the page's own.
        const left = r.data && r.data.attempts_left;
        const msg = left === undefined ? errorText(r.data, 'That code is not right.')
          : left > 0 ? 'That code is not right: check the code the toy shows. '
            + (left === 1 ? '1 attempt left.' : left + ' attempts left.')
          : 'That code is not right, and no attempt is left: start pairing again on the toy.';
        if (hint) {
          hint.textContent = msg;
          hint.classList.add('is-error');
        }
        status('', undefined, null);
        form.elements.code.select();
      } else {
        status(errorText(r.data), 'error', null);
        load();
      }
    });
    pendingList.addEventListener('click', async (ev) => {
      const btn = ev.target.closest('[data-reject]');
      if (!btn) return;
      btn.disabled = true;
      const r = await api('POST', '/api/v1/pairings/' + encodeURIComponent(btn.dataset.reject) + '/reject');
      if (r.ok || r.status === 404) status('Pairing request rejected.', 'ok');
      else status(errorText(r.data), 'error');
      load();
    });

    onEvent('toy', load);
    onEvent('resync', load);
    load();
  }

  // ---- account page ------------------------------------------------------
  const pwForm = $('[data-password]');
  if (pwForm) {
    pwForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const body = {
        current_password: pwForm.elements.current_password.value,
        new_password: pwForm.elements.new_password.value,
      };
      const btn = $('button[type="submit"]', pwForm);
      btn.disabled = true;
      const r = await api('POST', '/api/v1/me/password', body);
      btn.disabled = false;
      if (r.ok) {
        pwForm.reset();
        const n = r.data && r.data.other_sessions_ended;
        status('Password changed.' + (n ? ' Signed out ' + n + ' other device' + (n === 1 ? '' : 's') + '.' : ''), 'ok');
        loadSessions();
      } else {
        status(errorText(r.data, 'The password could not be changed.'), 'error');
      }
    });
  }
  const nameForm = $('[data-display-name]');
  if (nameForm) {
    nameForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const btn = $('button[type="submit"]', nameForm);
      btn.disabled = true;
      const r = await api('PATCH', '/api/v1/me', { display_name: nameForm.elements.display_name.value });
      btn.disabled = false;
      if (r.ok && r.data) {
        nameForm.elements.display_name.value = r.data.display_name;
        const me = $('.top nav a[href="/account"]');
        if (me) me.textContent = r.data.display_name;
        status('Saved: your messages are signed ' + r.data.display_name + '.', 'ok');
      } else status(errorText(r.data, 'The name could not be saved.'), 'error');
    });
  }
  const hhForm = $('[data-household]');
  if (hhForm) {
    const sel = hhForm.elements.retention_days;
    api('GET', '/api/v1/household').then((r) => {
      if (!r.ok || !r.data) return;
      const v = r.data.retention_days === null ? 'forever' : String(r.data.retention_days);
      if (![...sel.options].some((o) => o.value === v)) sel.append(el('option', { value: v, text: v + ' days' }));
      sel.value = v;
    });
    hhForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const v = sel.value;
      const body = { name: hhForm.elements.name.value, retention_days: v === 'forever' ? null : Number(v) };
      const btn = $('button[type="submit"]', hhForm);
      btn.disabled = true;
      const r = await api('PATCH', '/api/v1/household', body);
      btn.disabled = false;
      if (r.ok) status('Household settings saved.', 'ok');
      else status(errorText(r.data, 'The settings could not be saved.'), 'error');
    });
  }
  const mqttForm = $('[data-mqtt-password]');
  if (mqttForm) {
    mqttForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const btn = $('button[type="submit"]', mqttForm);
      btn.disabled = true;
      const pw = mqttForm.elements.password.value;
      const r = await api('PUT', '/api/v1/mqtt/password', { password: pw });
      btn.disabled = false;
      mqttForm.elements.password.value = '';
      if (r.ok) status(pw ? 'Broker password saved. The hub connects again with it.' : 'Broker password removed.', 'ok');
      else status(errorText(r.data, 'The password could not be saved.'), 'error');
    });
  }
  const mqttCheck = $('[data-mqtt-check]');
  if (mqttCheck) {
    mqttCheck.addEventListener('click', async () => {
      mqttCheck.disabled = true;
      status('Testing the connection…');
      const r = await api('POST', '/api/v1/mqtt/check');
      mqttCheck.disabled = false;
      if (r.ok && r.data && r.data.ok) status('Works: ' + r.data.message + '.', 'ok');
      else if (r.ok && r.data) status('Failed: ' + r.data.message, 'error');
      else status(errorText(r.data, 'The test could not run.'), 'error');
    });
  }
  const sessions = $('#sessions');
  async function loadSessions() {
    if (!sessions) return;
    const r = await api('GET', '/api/v1/sessions');
    if (!r.ok || !r.data) { status(errorText(r.data, 'Sessions could not be loaded.'), 'error'); return; }
    sessions.replaceChildren(...r.data.sessions.map((s) => {
      const what = s.kind === 'bearer' ? 'A program signed in with a token' + (s.device && s.device !== 'Unknown browser' ? ' (' + s.device + ')' : '') : (s.device || 'Unknown browser');
      return el('li', { class: 'card' },
        el('p', {}, el('strong', { text: what }), s.current ? ' ' : '', s.current ? el('span', { class: 'badge on', text: 'this device' }) : null),
        el('p', { class: 'hint', text: 'Signed in ' + fmtTime(s.created_at) + ' · last used ' + fmtTime(s.last_seen) + (s.client_ip ? ' · ' + s.client_ip : '') }),
        el('button', { type: 'button', class: 'danger', 'data-session': String(s.id), 'data-current': s.current ? '1' : null, text: 'Sign out this device' }));
    }));
  }
  if (sessions) {
    sessions.addEventListener('click', async (ev) => {
      const btn = ev.target.closest('[data-session]');
      if (!btn) return;
      btn.disabled = true;
      const r = await api('DELETE', '/api/v1/sessions/' + encodeURIComponent(btn.dataset.session));
      if (btn.dataset.current) { location.assign('/login'); return; }
      if (r.ok || r.status === 404) status('That device is signed out.', 'ok');
      else status(errorText(r.data), 'error');
      loadSessions();
    });
    loadSessions();
  }

  // ---- your data (admin) ---------------------------------------------------
  const exportLink = $('[data-export]');
  if (exportLink) {
    exportLink.addEventListener('click', () => status('The export is being prepared; your browser saves it as it arrives.', 'ok'));
  }
  const backupForm = $('[data-backup]');
  if (backupForm) {
    backupForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const a = backupForm.elements.passphrase.value;
      if (a !== backupForm.elements.passphrase2.value) {
        status('The two passphrases differ. Type the same passphrase twice.', 'error');
        backupForm.elements.passphrase2.focus();
        return;
      }
      const btn = $('button[type="submit"]', backupForm);
      btn.disabled = true;
      status('Making the backup…');
      let res;
      try {
        res = await fetch('/api/v1/backups', { method: 'POST', credentials: 'same-origin',
          headers: { 'X-CSRF-Token': CSRF, 'Content-Type': 'application/json' }, body: JSON.stringify({ passphrase: a }) });
      } catch (e) { res = null; }
      if (!res || !res.ok) {
        let data = null;
        try { data = res ? await res.json() : null; } catch (e) { data = null; }
        btn.disabled = false;
        status(errorText(data, 'The backup could not be made.'), 'error');
        return;
      }
      const name = (/filename="([^"]+)"/.exec(res.headers.get('content-disposition') || '') || [])[1] || 'hearth-backup.age';
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const link = el('a', { href: url, download: name, class: 'visually-hidden', text: name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      backupForm.reset();
      btn.disabled = false;
      status('Backup saved as ' + name + '. Check it below with its passphrase.', 'ok');
    });
  }
  const checkForm = $('[data-check-backup]');
  if (checkForm) {
    checkForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const file = checkForm.elements.file.files[0];
      if (!file) return;
      const out = $('#check-result');
      const btn = $('button[type="submit"]', checkForm);
      btn.disabled = true;
      out.textContent = 'Checking…';
      let res = null;
      let data = null;
      try {
        res = await fetch('/api/v1/backups/check', { method: 'POST', credentials: 'same-origin',
          headers: { 'X-CSRF-Token': CSRF, 'Content-Type': 'application/octet-stream',
            'X-Backup-Passphrase': encodeURIComponent(checkForm.elements.passphrase.value) }, body: file });
        data = await res.json();
      } catch (e) { data = null; }
      btn.disabled = false;
      if (res && res.ok && data) out.textContent = 'This backup is good: ' + data.summary + '.';
      else out.textContent = errorText(data, 'The backup could not be checked.');
    });
  }
  // ---- restore from a backup on the first-run setup page -----------------
  const restoreForm = $('[data-restore]');
  if (restoreForm) {
    restoreForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const file = restoreForm.elements.file.files[0];
      if (!file) return;
      const out = $('#restore-result');
      const btn = $('button[type="submit"]', restoreForm);
      btn.disabled = true;
      out.textContent = 'Restoring… a large backup takes a while; keep this page open.';
      let res = null;
      let data = null;
      try {
        res = await fetch('/api/v1/setup/restore', { method: 'POST', credentials: 'same-origin',
          headers: { 'Content-Type': 'application/octet-stream',
            'X-Setup-Code': restoreForm.elements.setup_code.value.trim(),
            'X-Backup-Passphrase': encodeURIComponent(restoreForm.elements.passphrase.value) }, body: file });
        data = await res.json();
      } catch (e) { data = null; }
      if (res && res.ok) {
        location.assign('/login?restored=1');
        return;
      }
      btn.disabled = false;
      out.textContent = errorText(data, 'The backup could not be restored. Nothing was changed.');
    });
  }
  const eraseForm = $('[data-erase]');
  if (eraseForm) {
    eraseForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!await ask({ title: 'Delete everything on this hub?', text: 'Every message, toy, member and setting is deleted. This cannot be undone.', confirm: 'Delete everything' })) return;
      const btn = $('button[type="submit"]', eraseForm);
      btn.disabled = true;
      const r = await api('DELETE', '/api/v1/household', { confirm: eraseForm.elements.confirm.value, password: eraseForm.elements.password.value });
      btn.disabled = false;
      if (r.ok) location.assign('/setup');
      else status(errorText(r.data, 'The household could not be deleted.'), 'error');
    });
  }
  $$('[data-delete-messages]').forEach((btn) => {
    btn.addEventListener('click', async () => {
      const name = btn.dataset.name;
      if (!await ask({ title: 'Delete every message of ' + name + '?', text: 'Kept messages too. This cannot be undone.', confirm: 'Delete messages' })) return;
      btn.disabled = true;
      const r = await api('DELETE', '/api/v1/toys/' + encodeURIComponent(btn.dataset.deleteMessages) + '/messages');
      btn.disabled = false;
      if (r.ok) status('Every message of ' + name + ' is deleted.', 'ok');
      else status(errorText(r.data, 'The messages could not be deleted.'), 'error');
    });
  });
  // ---- members (admins) --------------------------------------------------
  // Toy choices are shown only while the role is "relative".
  function syncToyChoices(form) {
    const role = form.elements.role;
    const box = $('[data-relative-only]', form);
    if (role && box) box.hidden = role.value !== 'relative';
  }
  function checkedToys(form) {
    return $$('input[name="toys"]:checked', form).map((i) => i.value);
  }
  function showInvitation(inv) {
    const out = $('#invite-result');
    if (!out) return;
    $('[data-invite-code]', out).textContent = inv.code;
    const a = $('[data-invite-url]', out);
    a.href = inv.url;
    a.textContent = inv.url;
    const t = $('[data-invite-expires]', out);
    t.setAttribute('datetime', inv.expires_at);
    t.textContent = fmtTime(inv.expires_at);
    const fig = $('[data-invite-qr]', out);
    const svg = new DOMParser().parseFromString(inv.qr_svg, 'image/svg+xml').documentElement;
    fig.replaceChildren(document.importNode(svg, true));
    out.hidden = false;
    status('Invitation created: code ' + inv.code + '.', 'ok');
  }
  const inviteForm = $('form[data-invite]');
  if (inviteForm) {
    syncToyChoices(inviteForm);
    inviteForm.elements.role.addEventListener('change', () => syncToyChoices(inviteForm));
    inviteForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const role = inviteForm.elements.role.value;
      const body = { role, toys: role === 'relative' ? checkedToys(inviteForm) : [] };
      const btn = $('button[type="submit"]', inviteForm);
      btn.disabled = true;
      const r = await api('POST', '/api/v1/invites', body);
      btn.disabled = false;
      if (r.ok && r.data) showInvitation(r.data);
      else status(errorText(r.data, 'The invitation could not be made.'), 'error');
    });
  }
  for (const form of $$('form[data-member]')) {
    syncToyChoices(form);
    form.elements.role.addEventListener('change', () => syncToyChoices(form));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const role = form.elements.role.value;
      const body = { role };
      if (role === 'relative') body.toys = checkedToys(form);
      const r = await api('PATCH', '/api/v1/users/' + encodeURIComponent(form.dataset.member), body);
      if (r.ok) { status(form.dataset.member + ' is saved.', 'ok'); location.reload(); }
      else status(errorText(r.data, 'The change could not be saved.'), 'error');
    });
  }
  for (const b of $$('[data-remove-member]')) {
    b.addEventListener('click', async () => {
      const name = b.dataset.removeMember;
      if (!await ask({ title: 'Remove ' + name + '?', text: name + ' is signed out at once and can no longer use this hub.', confirm: 'Remove' })) return;
      const r = await api('DELETE', '/api/v1/users/' + encodeURIComponent(name));
      if (r.ok) location.reload();
      else status(errorText(r.data, 'The member could not be removed.'), 'error');
    });
  }
  for (const b of $$('[data-revoke]')) {
    b.addEventListener('click', async () => {
      const r = await api('DELETE', '/api/v1/invites/' + encodeURIComponent(b.dataset.revoke));
      if (r.ok) location.reload();
      else status(errorText(r.data, 'The invitation could not be revoked.'), 'error');
    });
  }
  for (const b of $$('[data-reissue]')) {
    b.addEventListener('click', async () => {
      const r = await api('POST', '/api/v1/invites/' + encodeURIComponent(b.dataset.reissue) + '/reissue');
      if (r.ok && r.data) showInvitation(r.data);
      else status(errorText(r.data, 'A new code could not be made.'), 'error');
    });
  }
  // ---- sharing outside home (relay) --------------------------------------
  // Bubbles show their live shares; the dialog shares one message after a
  // confirmation saying what leaves, to which host, until when.
  const shareDialog = $('#share-dialog');
  let relayHost = null;
  let sharingId = null;
  function fmtDay(iso) {
    return new Date(iso).toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short' });
  }
  function markShared(shares) {
    for (const li of $$('li.bubble')) {
      const p = $('[data-shared]', li);
      if (!p) continue;
      const mine = shares.filter((x) => x.message_id === li.dataset.id && x.state === 'live');
      p.replaceChildren();
      p.hidden = mine.length === 0;
      for (const x of mine) {
        p.append('Shared with ' + x.contact + ' until ' + fmtDay(x.expires_at) + ' ',
          el('button', { type: 'button', class: 'link', 'data-stop-share': x.share_id, text: 'Stop sharing' }), ' ');
      }
    }
  }
  async function loadShares() {
    const r = await api('GET', '/api/v1/shares');
    if (r.ok && r.data) { markShared(r.data.shares); return r.data.shares; }
    return [];
  }
  async function stopShare(sid, btn) {
    if (!await ask({ title: 'Stop sharing?', text: 'The link stops working and the copy in the mailbox is deleted.', confirm: 'Stop sharing' })) return;
    if (btn) btn.disabled = true;
    const r = await api('DELETE', '/api/v1/shares/' + encodeURIComponent(sid));
    if (r.ok) status('Sharing stopped.', 'ok');
    else status(errorText(r.data), 'error');
    loadShares();
    if (typeof loadSharing === 'function') loadSharing();
  }
  function shareConfirmText() {
    const f = $('[data-share-form]', shareDialog);
    const hours = Number(f.elements.expires_in_hours.value);
    const until = new Date(Date.now() + hours * 3600 * 1000);
    const who = f.elements.contact.value.trim() || 'the person you choose';
    const n = Number(f.elements.replies.value);
    $('[data-share-confirm]', shareDialog).textContent =
      'This recording leaves the hub, encrypted, and is stored at ' + (relayHost || 'the family\'s mailbox') +
      '. Whoever holds the link (meant for ' + who + ') can listen until ' + until.toLocaleString() +
      (n ? ' and send ' + n + (n === 1 ? ' reply' : ' replies') + ', which wait for your approval.' : '.');
  }
  async function openShare(id) {
    if (!shareDialog) return;
    const r = await api('GET', '/api/v1/relay');
    if (!r.ok || !r.data || !r.data.configured) {
      status('Sharing outside home needs a relay mailbox: an admin sets one up on the Sharing page.', 'error');
      return;
    }
    relayHost = r.data.host;
    sharingId = id;
    const f = $('[data-share-form]', shareDialog);
    f.reset();
    f.hidden = false;
    $('[data-share-result]', shareDialog).hidden = true;
    shareConfirmText();
    shareDialog.showModal();
  }
  if (shareDialog) {
    const f = $('[data-share-form]', shareDialog);
    f.addEventListener('input', shareConfirmText);
    $('[data-share-cancel]', shareDialog).addEventListener('click', () => shareDialog.close());
    $('[data-share-done]', shareDialog).addEventListener('click', () => shareDialog.close());
    $('[data-share-copy]', shareDialog).addEventListener('click', async () => {
      const input = $('[data-share-link]', shareDialog);
      try { await navigator.clipboard.writeText(input.value); status('Link copied.', 'ok'); } catch (e) {
        input.select(); status('Select the link and copy it.', 'ok');
      }
    });
    f.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const body = {
        contact: f.elements.contact.value.trim(),
        expires_in_hours: Number(f.elements.expires_in_hours.value),
        replies: Number(f.elements.replies.value),
      };
      const title = f.elements.title.value.trim();
      if (title) body.title = title;
      const go = $('[data-share-go]', shareDialog);
      go.disabled = true;
      go.textContent = 'Encrypting and uploading…';
      const r = await api('POST', '/api/v1/messages/' + encodeURIComponent(sharingId) + '/shares', body);
      go.disabled = false;
      go.textContent = 'Share';
      if (!r.ok || !r.data) { shareDialog.close(); status(errorText(r.data, 'The message could not be shared.'), 'error'); return; }
      f.hidden = true;
      $('[data-share-result]', shareDialog).hidden = false;
      $('[data-share-who]', shareDialog).textContent = body.contact;
      $('[data-share-until]', shareDialog).textContent = new Date(r.data.expires_at).toLocaleString();
      $('[data-share-link]', shareDialog).value = r.data.link;
      const qr = $('[data-share-qr]', shareDialog);
      qr.replaceChildren();
      const svg = new DOMParser().parseFromString(r.data.qr_svg, 'image/svg+xml').documentElement;
      if (svg && svg.nodeName === 'svg') {
        svg.setAttribute('role', 'img');
        svg.setAttribute('aria-label', 'QR code of the link');
        qr.append(document.importNode(svg, true));
      }
      loadShares();
    });
  }
  if ($('li.bubble') || $('#timeline') || $('#new-recordings')) loadShares();

  // The Sharing page: replies awaiting approval, shares, the mailbox.
  const repliesList = $('[data-replies]');
  const sharesList = $('[data-shares]');
  let loadSharing = null;
  if (repliesList && sharesList) {
    let toysCache = [];
    loadSharing = async function () {
      const [rr, sr, tr] = await Promise.all([api('GET', '/api/v1/replies'), api('GET', '/api/v1/shares'), api('GET', '/api/v1/toys')]);
      if (tr.ok && tr.data) toysCache = tr.data.paired || [];
      if (rr.ok && rr.data) {
        repliesList.replaceChildren(...rr.data.messages.map((m) => {
          const sel = el('select', { 'aria-label': 'Toy for the reply from ' + m.from, 'data-reply-toy': m.id },
            ...toysCache.map((t) => el('option', { value: t.toy_id, text: t.name })));
          if (m.toy_id) sel.value = m.toy_id;
          return el('li', { class: 'card' },
            el('p', {}, el('strong', { text: m.from }), ' replied · ' + ((m.duration_ms || 0) / 1000).toFixed(1) + ' s · ' + fmtTime(m.created_at)),
            el('div', { class: 'actions' },
              el('button', { type: 'button', 'data-reply-play': m.id, text: 'Play' }),
              sel,
              el('button', { type: 'button', 'data-reply-approve': m.id, text: 'Send to toy' }),
              el('button', { type: 'button', class: 'danger', 'data-reply-discard': m.id, text: 'Discard' })));
        }));
        $('#no-replies').hidden = rr.data.messages.length > 0;
      }
      if (sr.ok && sr.data) {
        sharesList.replaceChildren(...sr.data.shares.map((x) => {
          const state = x.state === 'live' ? 'until ' + fmtTime(x.expires_at) : (x.state === 'stopping' ? 'stopping: deleting its copy from the mailbox' : 'ended');
          return el('li', { class: 'card' },
            el('p', {}, el('strong', { text: x.title }), ' for ' + x.contact + ' · ' + state),
            x.state === 'live' ? el('p', { class: 'hint', text: x.replies_left + ' reply slot(s) left' }) : null,
            x.state === 'live' ? el('button', { type: 'button', class: 'danger', 'data-stop-share': x.share_id, text: 'Stop sharing' }) : null);
        }));
        $('#no-shares').hidden = sr.data.shares.length > 0;
      }
    };
    const player2 = new Audio();
    document.addEventListener('click', async (ev) => {
      const btn = ev.target.closest('button');
      if (!btn) return;
      if (btn.dataset.replyPlay) {
        player2.src = '/api/v1/messages/' + encodeURIComponent(btn.dataset.replyPlay) + '/audio' + (wantWav ? '?format=wav' : '');
        try { await player2.play(); } catch (e) { status('This reply could not be played.', 'error'); }
      } else if (btn.dataset.replyApprove) {
        const sel = $('[data-reply-toy="' + btn.dataset.replyApprove + '"]');
        if (!sel || !sel.value) { status('Pair a toy first.', 'error'); return; }
        btn.disabled = true;
        const r = await api('POST', '/api/v1/messages/' + encodeURIComponent(btn.dataset.replyApprove) + '/approve', { toy_id: sel.value });
        if (r.ok) status('Sent to the toy.', 'ok'); else status(errorText(r.data), 'error');
        loadSharing();
      } else if (btn.dataset.replyDiscard) {
        if (!await ask({ title: 'Discard this reply?', text: 'It cannot be undone.', confirm: 'Discard' })) return;
        const r = await api('POST', '/api/v1/messages/' + encodeURIComponent(btn.dataset.replyDiscard) + '/discard');
        if (r.ok) status('Reply discarded.', 'ok'); else status(errorText(r.data), 'error');
        loadSharing();
      } else if (btn.dataset.stopShare && sharesList.contains(btn)) {
        await stopShare(btn.dataset.stopShare, btn);
      }
    });
    onEvent('message', (m) => { if (m.direction === 'from_contact' || m.deleted) loadSharing(); });
    loadSharing();
  }
  const relayForm = $('[data-relay-form]');
  if (relayForm) {
    const off = $('[data-relay-off]');
    const showRelay = (v) => {
      const st = $('[data-relay-state]');
      if (v && v.configured) {
        st.textContent = 'Relay is on: shared clips go to ' + v.host + '.' + (v.pending_deletes ? ' ' + v.pending_deletes + ' object(s) still to delete.' : '');
        for (const k of ['endpoint', 'region', 'bucket', 'prefix', 'access_key_id']) relayForm.elements[k].value = v[k] || '';
        relayForm.elements.path_style.checked = !!v.path_style;
        relayForm.elements.ca_cert.value = v.ca_cert || '';
        relayForm.elements.secret_access_key.required = false;
        off.hidden = false;
      } else {
        st.textContent = 'Relay is off until a mailbox is set.';
        relayForm.elements.secret_access_key.required = true;
        off.hidden = true;
      }
    };
    api('GET', '/api/v1/relay').then((r) => { if (r.ok) showRelay(r.data); });
    relayForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const e = relayForm.elements;
      const body = { endpoint: e.endpoint.value.trim(), region: e.region.value.trim(), bucket: e.bucket.value.trim(),
        prefix: e.prefix.value.trim() || 'hearth/', path_style: e.path_style.checked, access_key_id: e.access_key_id.value.trim() };
      if (e.secret_access_key.value) body.secret_access_key = e.secret_access_key.value;
      if (e.ca_cert.value.trim()) body.ca_cert = e.ca_cert.value;
      const btn = $('button[type="submit"]', relayForm);
      btn.disabled = true;
      btn.textContent = 'Checking the mailbox…';
      const r = await api('PUT', '/api/v1/relay', body);
      btn.disabled = false;
      btn.textContent = 'Check and save';
      if (r.ok) { e.secret_access_key.value = ''; status('The mailbox works; relay is on.', 'ok'); showRelay(Object.assign({ configured: true }, r.data)); }
      else status(errorText(r.data, 'The mailbox could not be checked.'), 'error');
    });
    off.addEventListener('click', async () => {
      if (!await ask({ title: 'Turn relay off?', text: 'Every share is stopped and its copy deleted from the mailbox.', confirm: 'Turn off' })) return;
      off.disabled = true;
      const r = await api('DELETE', '/api/v1/relay');
      off.disabled = false;
      if (r.ok) { status('Relay is off.', 'ok'); showRelay(null); relayForm.reset(); } else status(errorText(r.data), 'error');
      if (loadSharing) loadSharing();
    });
  }

  // ---- toys as characters: pictures, low battery, quiet hours ----------
  // The toy JSON (docs/api.md) carries `picture`, `battery_warning` (words
  // written by the hub, or null), `quiet_hours` and `quiet_now`. Cards and
  // the toy page's header show them; they follow `event: toy` live.
  function toyPicNode(t) {
    const label = t.picture ? t.picture.charAt(0).toUpperCase() + t.picture.slice(1) : '';
    return el('img', { class: 'toy-pic small', src: '/static/toy-' + (t.picture || 'bear') + '.svg',
      alt: label === 'Dino' ? 'Dinosaur' : label, width: '40', height: '40', 'data-toy-pic': t.toy_id });
  }
  function batteryWarnNode(t) {
    const node = el('span', { class: 'battery-warn', 'data-battery-warning': t.toy_id, hidden: !t.battery_warning },
      el('img', { src: '/static/battery-low.svg', alt: 'Warning:', width: '20', height: '20' }), ' ',
      el('span', { 'data-text': true, text: t.battery_warning || '' }));
    return node;
  }
  function quietNowText(t) {
    return t.quiet_now && t.quiet_hours
      ? (t.title || t.name) + ' is in quiet hours until ' + t.quiet_hours.end + ': messages sent now wait until then.'
      : '';
  }
  function applyCharacter(t) {
    if (!t || !t.toy_id) return;
    for (const n of $$('[data-battery-warning]')) {
      if (n.dataset.batteryWarning !== t.toy_id) continue;
      const text = $('[data-text]', n);
      const words = t.battery_warning || '';
      if (text && text.textContent !== words) text.textContent = words;
      n.hidden = !words;
    }
    for (const img of $$('img[data-toy-pic]')) {
      if (img.dataset.toyPic !== t.toy_id || !t.picture) continue;
      const fresh = toyPicNode(t);
      if (img.getAttribute('src') !== fresh.getAttribute('src')) {
        img.setAttribute('src', fresh.getAttribute('src'));
        img.setAttribute('alt', fresh.getAttribute('alt'));
      }
    }
    for (const img of $$('img[data-bubble-pic]')) {
      if (img.dataset.bubblePic === t.toy_id && t.picture) img.setAttribute('src', toyPicNode(t).getAttribute('src'));
    }
    for (const n of $$('[data-quiet-now]')) {
      if (n.dataset.quietNow !== t.toy_id) continue;
      const words = quietNowText(t);
      const text = $('[data-text]', n);
      if (text && text.textContent !== words) text.textContent = words;
      n.hidden = !words;
      n.dataset.quietUntil = t.quiet_until || '';
      lookAgainAtQuietEnd(n);
    }
  }
  // No event says that quiet hours ended: the page asks again then (by the
  // hub's `quiet_until`, a second late), so its note does not go stale.
  const quietTimers = new Map();
  function lookAgainAtQuietEnd(node) {
    clearTimeout(quietTimers.get(node));
    const until = Date.parse(node.dataset.quietUntil || '');
    if (isNaN(until)) return;
    const wait = until - Date.now() + 1000;
    if (wait > 0 && wait < 86400000) quietTimers.set(node, setTimeout(refreshCharacters, wait));
  }
  for (const n of $$('[data-quiet-now]')) lookAgainAtQuietEnd(n);
  let characterTimer = null;
  function refreshCharacters() {
    if (!CSRF || characterTimer) return;
    characterTimer = setTimeout(async () => {
      characterTimer = null;
      const r = await api('GET', '/api/v1/toys');
      if (r.ok && r.data) for (const t of r.data.paired || []) applyCharacter(t);
    }, 150);
  }
  // The toys page rebuilds its cards from the same JSON on every event.
  if ($('[data-battery-warning], [data-quiet-now]') && !$('#pending-list')) {
    onEvent('toy', (d) => {
      if (d && d.change === 'updated' && d.toy) applyCharacter(d.toy);
      else if (!d || d.change !== 'removed') refreshCharacters();
    });
    onEvent('resync', refreshCharacters);
  }
  const pictureForm = $('[data-picture]');
  if (pictureForm) {
    pictureForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const chosen = $('input[name="picture"]:checked', pictureForm);
      if (!chosen) { status('Choose a picture first.', 'error'); return; }
      const btn = $('button[type="submit"]', pictureForm);
      btn.disabled = true;
      const r = await api('PATCH', '/api/v1/toys/' + encodeURIComponent(pictureForm.dataset.picture), { picture: chosen.value });
      btn.disabled = false;
      if (r.ok && r.data) {
        applyCharacter(r.data);
        status('Picture saved.', 'ok');
      } else status(errorText(r.data, 'The picture could not be saved.'), 'error');
    });
  }
  const quietForm = $('[data-quiet]');
  if (quietForm) {
    quietForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const e = quietForm.elements;
      const body = { quiet_hours: { on: e.on.checked, start: e.start.value, end: e.end.value } };
      const btn = $('button[type="submit"]', quietForm);
      btn.disabled = true;
      const r = await api('PATCH', '/api/v1/toys/' + encodeURIComponent(quietForm.dataset.quiet), body);
      btn.disabled = false;
      if (r.ok && r.data) {
        applyCharacter(r.data);
        const q = r.data.quiet_hours;
        status(q && q.on ? 'Quiet hours saved: from ' + q.start + ' until ' + q.end + '.'
          + (r.data.quiet_now ? ' They apply now.' : '')
          : 'Quiet hours are off: messages are played as they arrive.', 'ok');
      } else status(errorText(r.data, 'The quiet hours could not be saved.'), 'error');
    });
  }

  prettifyTimes(document.querySelector('main'));
  startEvents();
})();
