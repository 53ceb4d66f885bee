// The status page of `shmcache serve`. Every key and value from a segment is
// shown through textContent (never innerHTML): a segment is hostile input.
'use strict';

(function () {
  const HISTORY = 3600;
  const PAGE = 50;
  const TOKEN_KEY = 'shmcache-token';
  const $ = (id) => document.getElementById(id);

  const state = {
    caches: [],
    name: null,
    series: null,
    since: 0,
    prefix: '',
    offset: 0,
    total: 0,
    entryKey: null,
    charts: { ratio: null, rates: null },
    polling: false,
  };

  // ---------- formatting ----------
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  function bytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '?';
    let u = 0;
    while (n >= 1024 && u < UNITS.length - 1) { n /= 1024; u++; }
    return u === 0 ? n + ' B' : n.toFixed(1) + ' ' + UNITS[u];
  }
  const count = (n) => (typeof n === 'number' && isFinite(n) ? Math.round(n).toLocaleString('en-US') : '?');
  const percent = (r) => (typeof r === 'number' && isFinite(r) ? (r * 100).toFixed(1) + '%' : '–');
  const rate = (n) => (typeof n === 'number' && isFinite(n) ? (n >= 1e4 ? (n / 1e3).toFixed(1) + 'k' : n.toFixed(1)) + '/s' : '–');
  function ttl(ms) {
    if (ms === null || ms === undefined) return '?';
    if (ms === 0) return 'none';
    let s = Math.ceil(ms / 1000);
    const parts = [];
    for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]]) {
      if (s >= size) { parts.push(Math.floor(s / size) + unit); s %= size; }
    }
    if (s > 0 || parts.length === 0) parts.push(s + 's');
    return parts.slice(0, 2).join(' ');
  }

  /** An element with text children only: strings become text nodes. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  /** The answer to what the user did (stays until the next one). */
  function message(text, kind) {
    show($('message'), text, kind);
  }
  /** What is wrong with the cache shown (kept current by each sample). */
  function cacheError(text) {
    show($('cache-error'), text);
  }
  function show(m, text, kind) {
    if (!text) { m.hidden = true; m.textContent = ''; return; }
    m.hidden = false;
    m.className = 'message' + (kind === 'info' ? ' info' : '');
    m.textContent = text;
  }

  /** Text for a confirm() dialog: quoted, control and bidi characters (which could reword the dialog) as escapes. */
  function quoted(s) {
    // eslint-disable-next-line no-control-regex -- matching them is the point
    return JSON.stringify(String(s)).replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
  }

  // ---------- API ----------
  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
  async function api(path, options) {
    const res = await fetch(path, Object.assign({ cache: 'no-store' }, options));
    let body = null;
    try { body = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) {
      const err = new Error(body && body.message ? (body.error ? body.error + ': ' : '') + body.message : 'HTTP ' + res.status);
      err.status = res.status;
      throw err;
    }
    return body;
  }
  const cachePath = (what) => '/api/caches/' + encodeURIComponent(state.name) + '/' + what;
  function post(what, body) {
    return api(cachePath(what), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token() },
      body: JSON.stringify(body || {}),
    });
  }

  // ---------- token ----------
  function showTokenState() {
    $('token-state').textContent = token() ? 'saved for this tab' : 'not set';
  }
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
    $('token').value = '';
    showTokenState();
  });

  // ---------- caches ----------
  async function loadCaches() {
    try {
      state.caches = await api('/api/caches');
    } catch (e) {
      cacheError('Cannot list the caches: ' + e.message);
      return;
    }
    const nav = $('caches');
    nav.replaceChildren(
      ...state.caches.map((c) =>
        el('button', {
          type: 'button',
          class: c.error ? 'failed' : '',
          'aria-current': String(c.name === state.name),
          title: c.path,
          text: c.name,
          onclick: () => select(c.name),
        }),
      ),
    );
    if (state.caches.length === 0) cacheError('No caches: no segment file found yet.');
    let wanted = '';
    try {
      wanted = decodeURIComponent(location.hash.slice(1));
    } catch {
      /* a malformed hash (#%E0%A4%A): no cache asked for */
    }
    if (!state.name || !state.caches.some((c) => c.name === state.name)) {
      const first = state.caches.find((c) => c.name === wanted) || state.caches[0];
      if (first) select(first.name);
    }
  }

  function select(name) {
    if (state.name === name) return;
    state.name = name;
    history.replaceState(null, '', '#' + encodeURIComponent(name));
    for (const b of $('caches').children) b.setAttribute('aria-current', String(b.textContent === name));
    state.series = null;
    state.since = 0;
    state.offset = 0;
    state.prefix = '';
    $('prefix').value = '';
    message('');
    cacheError('');
    closeEntry();
    $('cache-name').textContent = name;
    const c = state.caches.find((x) => x.name === name);
    $('cache-path').textContent = c ? c.path : '';
    refresh();
    loadKeys();
  }

  // ---------- stats and charts ----------
  const RATE_SERIES = [
    ['hits', '#2e9b57'],
    ['misses', '#c2332b'],
    ['sets', '#2f6fde'],
    ['evictions', '#d18b0b'],
    ['expired', '#8a56c2'],
  ];

  function chartSize(div) {
    const w = Math.max(200, div.clientWidth);
    return { width: w, height: w < 500 ? 170 : 200 };
  }

  function makeCharts() {
    for (const k of ['ratio', 'rates']) if (state.charts[k]) state.charts[k].destroy();
    const ratioDiv = $('chart-ratio');
    const ratesDiv = $('chart-rates');
    ratioDiv.replaceChildren();
    ratesDiv.replaceChildren();
    const axes = [{}, { size: 56, values: (u, v) => v.map((x) => x + '%') }];
    state.charts.ratio = new uPlot(
      Object.assign(chartSize(ratioDiv), {
        scales: { x: { time: true }, y: { range: [0, 100] } },
        series: [{}, { label: 'hit ratio', stroke: '#2e9b57', fill: 'rgba(46,155,87,0.12)', value: (u, v) => (v === null ? '–' : v.toFixed(1) + '%') }],
        axes,
        legend: { live: false },
      }),
      [[], []],
      ratioDiv,
    );
    state.charts.rates = new uPlot(
      Object.assign(chartSize(ratesDiv), {
        scales: { x: { time: true } },
        series: [{}].concat(RATE_SERIES.map(([label, stroke]) => ({ label: label + '/s', stroke, width: 1.5, value: (u, v) => (v === null ? '–' : v.toFixed(1)) }))),
        axes: [{}, { size: 56 }],
        legend: { live: false },
      }),
      [[]].concat(RATE_SERIES.map(() => [])),
      ratesDiv,
    );
  }

  function drawCharts() {
    const s = state.series;
    if (!s) return;
    if (!state.charts.ratio) makeCharts();
    const x = s.t.map((t) => t / 1000);
    state.charts.ratio.setData([x, s.hitRatio.map((r) => (r === null ? null : r * 100))]);
    state.charts.rates.setData([x].concat(RATE_SERIES.map(([k]) => s[k])));
  }

  window.addEventListener('resize', () => {
    for (const [k, id] of [['ratio', 'chart-ratio'], ['rates', 'chart-rates']]) {
      if (state.charts[k]) state.charts[k].setSize(chartSize($(id)));
    }
  });

  function appendSeries(add) {
    if (!state.series) {
      state.series = add;
    } else {
      for (const k of Object.keys(add)) state.series[k] = (state.series[k] || []).concat(add[k]);
    }
    const s = state.series;
    const extra = s.t.length - HISTORY;
    if (extra > 0) for (const k of Object.keys(s)) s[k] = s[k].slice(extra);
    if (s.t.length) state.since = s.t[s.t.length - 1];
  }

  const last = (a) => (a && a.length ? a[a.length - 1] : null);

  function showNumbers(r) {
    const s = r.stats;
    const numbers = $('numbers');
    const used = $('fill-used');
    if (!s) {
      used.style.width = '0';
      $('fill-text').textContent = '';
      numbers.replaceChildren();
      return;
    }
    const fill = s.size > 0 ? s.used / s.size : 0;
    used.style.width = (fill * 100).toFixed(1) + '%';
    used.className = 'used' + (fill >= 0.95 ? ' full' : fill >= 0.8 ? ' warn' : '');
    $('fill-text').textContent =
      bytes(s.used) + ' used of ' + bytes(s.size) + ' (' + percent(fill) + '), ' + bytes(s.size - s.used) + ' free; ' +
      count(s.freePages) + ' of ' + count(s.pages) + ' pages free';
    const ser = state.series || {};
    const items = [
      ['entries', count(s.entries), 'entries'],
      ['hit ratio', percent(s.hitRatio), 'hit-ratio'],
      ['hits/s', rate(last(ser.hits)), 'rate-hits'],
      ['misses/s', rate(last(ser.misses)), 'rate-misses'],
      ['sets/s', rate(last(ser.sets)), 'rate-sets'],
      ['evictions/s', rate(last(ser.evictions)), 'rate-evictions'],
      ['expired/s', rate(last(ser.expired)), 'rate-expired'],
      ['hits', count(s.hits), 'hits'],
      ['misses', count(s.misses), 'misses'],
      ['evictions', count(s.evictions), 'evictions'],
      ['repairs', count(s.repairs), 'repairs'],
      ['max value', bytes(s.maxValueSize), 'max-value'],
    ];
    numbers.replaceChildren(...items.map(([label, value, id]) => el('div', {}, el('dt', { text: label }), el('dd', { id: 'n-' + id, text: value }))));
  }

  /** What the segment says of damage: verify()'s problems (it only reports), the repairs counter. */
  function damageText(name, r) {
    const parts = [];
    const d = r.damage;
    if (d && !d.ok) {
      parts.push(name + ' is damaged: verify found ' + count(d.problems.length) + (d.problems.length === 1 ? ' problem' : ' problems') +
        ' (nothing was repaired; shmcache verify --repair drops what they touch), first: ' + d.problems[0]);
    }
    if (r.stats && r.stats.repairs > 0) parts.push(name + ' has repaired damage ' + count(r.stats.repairs) + ' times.');
    return parts.join(' ');
  }

  async function refresh() {
    const name = state.name;
    if (!name) return;
    let r;
    try {
      r = await api(cachePath('stats?since=' + state.since));
    } catch (e) {
      if (name === state.name) cacheError('Cannot read ' + name + ': ' + e.message);
      return;
    }
    if (name !== state.name) return; // switched meanwhile
    appendSeries(r.series);
    cacheError(r.error ? name + ': ' + r.error.code + ': ' + r.error.message : damageText(name, r));
    showNumbers(r);
    drawCharts();
  }

  // ---------- entries ----------
  async function loadKeys() {
    const name = state.name;
    if (!name) return;
    const q = new URLSearchParams({ prefix: state.prefix, limit: String(PAGE), offset: String(state.offset) });
    let r;
    try {
      r = await api(cachePath('keys?' + q));
    } catch (e) {
      if (name === state.name) {
        $('rows').replaceChildren(el('tr', {}, el('td', { colspan: '4', class: 'muted', text: e.message })));
        $('page-info').textContent = '';
      }
      return;
    }
    if (name !== state.name) return;
    state.total = r.total;
    if (r.keys.length === 0 && state.offset > 0 && state.offset >= r.total) {
      state.offset = Math.max(0, Math.floor((r.total - 1) / PAGE) * PAGE);
      return loadKeys();
    }
    $('rows').replaceChildren(
      ...(r.keys.length === 0
        ? [el('tr', {}, el('td', { colspan: '4', class: 'muted', text: state.prefix ? 'No key starts with this prefix.' : 'No entries.' }))]
        : r.keys.map((k) =>
            el(
              'tr',
              { class: k.key === state.entryKey ? 'selected' : '' },
              el('td', { class: 'key' }, el('button', { type: 'button', title: k.key, text: k.key, onclick: () => showEntry(k.key) })),
              el('td', { text: k.type }),
              el('td', { class: 'num', text: bytes(k.bytes) }),
              el('td', { class: 'num', text: ttl(k.ttl) }),
            ),
          )),
    );
    const from = r.total === 0 ? 0 : state.offset + 1;
    $('page-info').textContent = count(from) + '–' + count(state.offset + r.keys.length) + ' of ' + count(r.total);
    $('prev').disabled = state.offset === 0;
    $('next').disabled = state.offset + PAGE >= r.total;
  }

  $('search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.prefix = $('prefix').value;
    state.offset = 0;
    loadKeys();
  });
  $('prev').addEventListener('click', () => {
    state.offset = Math.max(0, state.offset - PAGE);
    loadKeys();
  });
  $('next').addEventListener('click', () => {
    state.offset += PAGE;
    loadKeys();
  });

  async function showEntry(key) {
    state.entryKey = key;
    let r;
    try {
      r = await api(cachePath('entry?' + new URLSearchParams({ key })));
    } catch (e) {
      message(e.status === 404 ? 'The entry is gone.' : 'Cannot read the entry: ' + e.message, 'info');
      loadKeys();
      return;
    }
    $('entry').hidden = false;
    $('entry-key').textContent = r.key;
    $('entry-type').textContent = r.type;
    $('entry-bytes').textContent = bytes(r.bytes) + (r.bytes >= 1024 ? ' (' + count(r.bytes) + ' bytes)' : '');
    $('entry-ttl').textContent = ttl(r.ttl);
    $('entry-preview').textContent = r.preview;
    $('entry-truncated').hidden = !r.truncated;
    for (const tr of $('rows').children) {
      const b = tr.querySelector('button');
      tr.className = b && b.title === key ? 'selected' : '';
    }
    $('entry').scrollIntoView({ block: 'nearest' });
  }

  function closeEntry() {
    state.entryKey = null;
    $('entry').hidden = true;
  }
  $('close-entry').addEventListener('click', closeEntry);

  function needToken(e) {
    if (e.status === 401) {
      message('The token is missing or wrong: enter the token printed by shmcache serve.');
      $('token').focus();
    } else {
      message(e.message);
    }
  }

  $('delete').addEventListener('click', async () => {
    const key = state.entryKey;
    if (key === null) return;
    if (!confirm('Delete this entry from ' + quoted(state.name) + '?\n\nkey: ' + quoted(key))) return;
    try {
      const r = await post('delete', { key });
      message(r.deleted ? 'Deleted.' : 'It was already gone.', 'info');
      closeEntry();
      loadKeys();
    } catch (e) {
      needToken(e);
    }
  });

  $('clear').addEventListener('click', async () => {
    if (!state.name) return;
    if (!confirm('Clear every entry of ' + quoted(state.name) + '?')) return;
    try {
      const r = await post('clear');
      message('Cleared ' + count(r.cleared) + ' entries.', 'info');
      closeEntry();
      state.offset = 0;
      loadKeys();
    } catch (e) {
      needToken(e);
    }
  });

  // ---------- start ----------
  showTokenState();
  loadCaches();
  setInterval(() => refresh(), 1000);
  setInterval(() => loadCaches(), 5000);
})();
