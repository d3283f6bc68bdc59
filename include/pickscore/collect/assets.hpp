// pickscore/collect/assets.hpp — the pages of `pickscore collect`, compiled into the program: the
// voting page (/, /app.js, /app.css) and the admin page (/admin, /admin.js). Plain HTML, CSS and
// JavaScript: no build step, nothing loaded from other sites, no inline script or style (the server
// sends a Content-Security-Policy that forbids them). Text from users is only ever put into the page
// with textContent, never parsed as HTML.
//
// The voting page: sign in (name, e-mail; the link arrives by the server log or e-mail), then a
// prompt with two images side by side (also on a phone: two columns). Choose with the buttons, by
// clicking an image, or with the keys: left = ← or A or 1, right = → or D or 2, tie = ↓ or T or =,
// skip = ↑ or S or 0. The next pair is fetched and its images decoded while the current one is on
// screen, so it appears as soon as the vote is acknowledged. After a vote, the line under the
// images says what PickScore would have chosen (when the server has --model). For the browser
// test, <body data-view> names the visible view (signin, vote, done) and #pair[data-show-id] the
// pair on screen.
#pragma once

namespace pickscore::collect::assets {

inline constexpr const char* index_html = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Which image is better?</title>
<link rel="stylesheet" href="/app.css">
</head>
<body data-view="loading">
<header>
  <strong>Which image fits the prompt better?</strong>
  <span class="who"><span id="who"></span> <button id="signout" type="button" class="small" hidden>Sign out</button></span>
</header>
<main>
  <section id="view-loading"><p class="center">Loading…</p></section>

  <section id="view-signin" hidden>
    <h1>Sign in</h1>
    <p>Tell us who you are. You will get a link that signs you in.</p>
    <form id="signin-form" autocomplete="on">
      <label>Name <input id="name" name="name" required maxlength="100" autocomplete="name"></label>
      <label>E-mail <input id="email" name="email" type="email" required maxlength="254" autocomplete="email"></label>
      <button id="signin-button" type="submit">Send me the sign-in link</button>
    </form>
    <p id="signin-status" role="status"></p>
  </section>

  <section id="view-vote" hidden>
    <form id="generate-form" class="generate" hidden>
      <input id="generate-prompt" maxlength="500" placeholder="Type a prompt to generate two new images" aria-label="Prompt">
      <button id="generate-button" type="submit">Generate</button>
    </form>
    <p id="prompt" class="prompt"></p>
    <div id="pair" class="pair">
      <figure>
        <img id="left" alt="the left image">
        <button id="btn-left" type="button" data-choice="left">Left is better <kbd>←</kbd></button>
      </figure>
      <figure>
        <img id="right" alt="the right image">
        <button id="btn-right" type="button" data-choice="right">Right is better <kbd>→</kbd></button>
      </figure>
    </div>
    <div class="controls">
      <button id="btn-tie" type="button" data-choice="tie">Tie <kbd>↓</kbd></button>
      <button id="btn-skip" type="button" data-choice="skip">Skip <kbd>S</kbd></button>
    </div>
    <p id="feedback" class="feedback" role="status"></p>
    <p id="count" class="count"></p>
  </section>

  <section id="view-done" hidden>
    <p class="center">You have seen every pair. Thank you!</p>
    <form id="generate-form-done" class="generate" hidden>
      <input id="generate-prompt-done" maxlength="500" placeholder="Type a prompt to generate two new images" aria-label="Prompt">
      <button type="submit">Generate</button>
    </form>
  </section>

  <p id="message" class="message" role="alert"></p>
</main>
<script src="/app.js"></script>
</body>
</html>
)HTML";

inline constexpr const char* app_css = R"CSS(:root { color-scheme: light dark; --gap: 12px; --accent: #2f6fdd; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 16px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; justify-content: space-between; align-items: center; gap: var(--gap);
         padding: 8px 16px; border-bottom: 1px solid #8884; }
main { max-width: 1200px; margin: 0 auto; padding: 12px; }
h1 { font-size: 1.4rem; }
form { display: flex; flex-direction: column; gap: 10px; max-width: 420px; }
label { display: flex; flex-direction: column; gap: 4px; }
input { font: inherit; padding: 10px; border-radius: 8px; border: 1px solid #8886; }
button { font: inherit; padding: 10px 16px; min-height: 44px; border-radius: 8px; border: 1px solid #8886;
         background: #8881; cursor: pointer; }
button:hover, button:focus-visible { border-color: var(--accent); }
button:disabled { opacity: .5; cursor: default; }
button.small { min-height: 32px; padding: 4px 10px; font-size: .9rem; }
.prompt { font-size: 1.25rem; text-align: center; margin: 8px 0 12px; overflow-wrap: anywhere; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: var(--gap); }
.pair figure { margin: 0; display: flex; flex-direction: column; gap: 8px; min-width: 0; }
.pair img { width: 100%; aspect-ratio: 1; max-height: 58vh; object-fit: contain; background: #8882;
            border-radius: 8px; cursor: pointer; }
.controls { display: flex; justify-content: center; gap: var(--gap); margin-top: 12px; }
.controls button { min-width: 120px; }
.generate { flex-direction: row; max-width: none; margin-bottom: 12px; }
.generate input { flex: 1; min-width: 0; }
.feedback, .count, .center { text-align: center; }
.count { opacity: .7; font-size: .9rem; }
.message { color: #c33; text-align: center; min-height: 1.4em; }
kbd { font: .8rem ui-monospace, monospace; padding: 1px 5px; border: 1px solid #8886; border-radius: 4px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 24px; font-size: .9rem; }
th, td { border-bottom: 1px solid #8884; padding: 4px 6px; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.flagged td { background: #c331; }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 8px; margin: 8px 0 24px; }
.totals div { border: 1px solid #8884; border-radius: 8px; padding: 8px; }
.totals b { display: block; font-size: 1.2rem; }
@media (max-width: 600px) {
  main { padding: 6px; }
  .pair { gap: 6px; }
  kbd { display: none; }
  .controls button { min-width: 0; flex: 1; }
  header { padding: 6px 8px; font-size: .9rem; }
}
)CSS";

inline constexpr const char* app_js = R"JS('use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { info: null, current: null, nextPromise: null, busy: false, votes: 0 };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function setView(name) {
    for (const v of ['loading', 'signin', 'vote', 'done']) $('view-' + v).hidden = v !== name;
    document.body.dataset.view = name;
  }
  function message(text) { $('message').textContent = text || ''; }

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: {} };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      return { status: 0, data: { error: 'The server cannot be reached.' } };
    }
    let data = {};
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    return { status: res.status, data };
  }

  // Resolves once both images of a pair are decoded (or failed), so showing it is instant.
  function preload(pair) {
    if (!pair || pair.done) return Promise.resolve(pair);
    const load = (src) => new Promise((resolve) => {
      const img = new Image();
      img.onload = img.onerror = () => resolve();
      img.src = src;
    });
    return Promise.all([load(pair.left), load(pair.right)]).then(() => pair);
  }

  async function fetchPair() {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const r = await api('GET', '/api/pair');
      if (r.status === 200) return preload(r.data);
      if (r.status === 401) return { signedOut: true };
      if (r.status === 429) { await sleep(1000 * attempt); continue; }
      return { error: r.data.error || ('error ' + r.status) };
    }
    return { error: 'The server is busy; reload the page in a moment.' };
  }

  function setButtons(on) {
    for (const id of ['btn-left', 'btn-right', 'btn-tie', 'btn-skip']) $(id).disabled = !on;
  }

  function show(pair) {
    if (!pair || pair.signedOut) { showSignin(); return; }
    if (pair.error) { message(pair.error); state.busy = false; return; }
    state.current = pair;
    if (pair.done) {
      $('generate-form-done').hidden = !pair.generate;
      setView('done');
      return;
    }
    $('prompt').textContent = pair.prompt;
    $('left').src = pair.left;
    $('right').src = pair.right;
    $('pair').dataset.showId = String(pair.show_id);
    setView('vote');
    state.busy = false;
    setButtons(true);
  }

  // Shows the prefetched pair (or fetches one) and starts fetching the one after it.
  async function advance() {
    const next = await (state.nextPromise || fetchPair());
    state.nextPromise = null;
    show(next);
    if (next && !next.done && !next.error && !next.signedOut) state.nextPromise = fetchPair();
  }

  function describe(choice, ps) {
    const mine = { left: 'You chose the left image.', right: 'You chose the right image.',
                   tie: 'You called it a tie.', skip: 'Skipped.' }[choice];
    if (!state.info || !state.info.pickscore || choice === 'skip') return mine;
    if (!ps) return mine + ' PickScore has not scored these images yet.';
    const p = ps.choice === 'left' ? ps.probability_left : 1 - ps.probability_left;
    const which = ps.choice === 'tie' ? 'a tie' : 'the ' + ps.choice + ' image';
    return mine + ' PickScore would have chosen ' + which + ' (' + Math.round(100 * p) + '%).';
  }

  async function vote(choice) {
    const pair = state.current;
    if (!pair || pair.done || state.busy) return;
    state.busy = true;
    setButtons(false);
    message('');
    const r = await api('POST', '/api/vote', { show_id: pair.show_id, choice });
    if (r.status === 200 || r.status === 409) {
      if (r.status === 200) {
        state.votes++;
        $('count').textContent = state.votes + (state.votes === 1 ? ' vote' : ' votes') + ' in this session';
      }
      $('feedback').textContent = describe(choice, r.data.pickscore);
      await advance();
    } else if (r.status === 401) {
      showSignin();
    } else {
      message(r.data.error || ('error ' + r.status));
      state.busy = false;
      setButtons(true);
    }
  }

  async function generate(input, button) {
    const prompt = input.value.trim();
    if (!prompt) return;
    if (button) button.disabled = true;
    message('Generating images for your prompt…');
    const r = await api('POST', '/api/generate', { prompt });
    if (button) button.disabled = false;
    if (r.status === 200) {
      message('');
      input.value = '';
      const pair = await preload(r.data);
      show(pair);
      if (!state.nextPromise && !pair.done) state.nextPromise = fetchPair();
    } else {
      message(r.data.error || ('error ' + r.status));
    }
  }

  function showSignin() {
    $('who').textContent = '';
    $('signout').hidden = true;
    setView('signin');
  }

  async function start() {
    const r = await api('GET', '/api/me');
    if (r.status !== 200) { message(r.data.error || 'The server cannot be reached.'); return; }
    state.info = r.data;
    if (!r.data.signed_in) { showSignin(); return; }
    $('who').textContent = r.data.name;
    $('signout').hidden = false;
    $('generate-form').hidden = !r.data.generate;
    await advance();
  }

  $('signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('signin-button').disabled = true;
    const r = await api('POST', '/api/signin', { name: $('name').value.trim(), email: $('email').value.trim() });
    $('signin-button').disabled = false;
    $('signin-status').textContent = r.status === 200 ? r.data.message : (r.data.error || ('error ' + r.status));
    document.body.dataset.signin = r.status === 200 ? 'sent' : 'failed';
  });
  $('signout').addEventListener('click', async () => {
    await api('POST', '/api/signout', {});
    state.current = null;
    state.nextPromise = null;
    showSignin();
  });
  for (const id of ['btn-left', 'btn-right', 'btn-tie', 'btn-skip'])
    $(id).addEventListener('click', (e) => vote(e.currentTarget.dataset.choice));
  $('left').addEventListener('click', () => vote('left'));
  $('right').addEventListener('click', () => vote('right'));
  $('generate-form').addEventListener('submit', (e) => { e.preventDefault(); generate($('generate-prompt'), $('generate-button')); });
  $('generate-form-done').addEventListener('submit', (e) => { e.preventDefault(); generate($('generate-prompt-done'), null); });
  document.addEventListener('keydown', (e) => {
    if (document.body.dataset.view !== 'vote' || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target && (e.target.tagName === 'INPUT' || e.target.tagName === 'TEXTAREA')) return;
    const keys = { ArrowLeft: 'left', a: 'left', A: 'left', 1: 'left',
                   ArrowRight: 'right', d: 'right', D: 'right', 2: 'right',
                   ArrowDown: 'tie', t: 'tie', T: 'tie', '=': 'tie',
                   ArrowUp: 'skip', s: 'skip', S: 'skip', 0: 'skip' };
    const choice = keys[e.key];
    if (choice) { e.preventDefault(); vote(choice); }
  });
  start();
})();
)JS";

inline constexpr const char* admin_html = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pickscore collect: admin</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header><strong>pickscore collect: admin</strong>
  <span><label><input id="exclude" type="checkbox"> leave out flagged users</label>
  <button id="refresh" type="button" class="small">Refresh</button></span></header>
<main>
  <form id="token-form">
    <label>Admin token <input id="token" type="password" autocomplete="off" required></label>
    <button type="submit">Show statistics</button>
  </form>
  <p id="message" class="message" role="alert"></p>
  <section id="stats" hidden>
    <h2>Totals</h2>
    <div id="totals" class="totals"></div>
    <h2>Generators</h2>
    <table id="generators"></table>
    <h2>People</h2>
    <table id="users"></table>
  </section>
</main>
<script src="/admin.js"></script>
</body>
</html>
)HTML";

inline constexpr const char* admin_js = R"JS('use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const pct = (x) => (x === null || x === undefined) ? '–' : (100 * x).toFixed(1) + '%';
  const token = () => sessionStorage.getItem('pickscore-admin-token') || '';

  async function call(method, path, body) {
    const init = { method, headers: { Authorization: 'Bearer ' + token() } };
    if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
    const res = await fetch(path, init);
    let data = {};
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    return { status: res.status, data };
  }

  function cell(tr, text, cls) {
    const td = document.createElement(tr.parentElement && tr.parentElement.tagName === 'THEAD' ? 'th' : 'td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function table(el, columns, rows, decorate) {
    el.textContent = '';
    const head = el.createTHead().insertRow();
    for (const [title, , cls] of columns) { const th = document.createElement('th'); th.textContent = title; if (cls) th.className = cls; head.appendChild(th); }
    const body = el.createTBody();
    for (const row of rows) {
      const tr = body.insertRow();
      for (const [, get, cls] of columns) cell(tr, String(get(row)), cls);
      if (decorate) decorate(tr, row);
    }
  }

  async function load() {
    if (!token()) return;
    const r = await call('GET', '/api/admin/stats' + ($('exclude').checked ? '?exclude_flagged=1' : ''));
    if (r.status !== 200) { $('message').textContent = r.data.error || ('error ' + r.status); $('stats').hidden = true; return; }
    $('message').textContent = '';
    $('token-form').hidden = true;
    $('stats').hidden = false;
    const s = r.data, t = s.totals, a = s.agreement;
    const totals = [
      ['votes', t.votes], ['people who voted', t.voters], ['users (verified)', t.users + ' (' + t.verified_users + ')'],
      ['flagged users', t.flagged_users], ['left / right', t.left + ' / ' + t.right], ['ties', t.tie],
      ['tie rate', pct(t.tie_rate)], ['skips', t.skip], ['prompts', t.prompts], ['images', t.images], ['pairs', t.pairs],
      ['agreement with PickScore', s.model ? pct(a.pickscore.agreement) + ' of ' + a.pickscore.votes : 'no --model'],
      ['agreement between people', pct(a.between_users.agreement) + ' of ' + a.between_users.vote_pairs],
    ];
    const box = $('totals');
    box.textContent = '';
    for (const [k, v] of totals) {
      const d = document.createElement('div');
      const b = document.createElement('b');
      b.textContent = String(v);
      d.appendChild(b);
      d.appendChild(document.createTextNode(k));
      box.appendChild(d);
    }
    table($('generators'), [
      ['generator', (g) => g.generator], ['comparisons', (g) => g.comparisons, 'num'], ['wins', (g) => g.wins, 'num'],
      ['losses', (g) => g.losses, 'num'], ['ties', (g) => g.ties, 'num'], ['win rate (ties ½)', (g) => pct(g.win_rate), 'num'],
      ['tie rate', (g) => pct(g.tie_rate), 'num'],
    ], s.generators);
    table($('users'), [
      ['id', (u) => u.id, 'num'], ['name', (u) => u.name], ['e-mail', (u) => u.email], ['votes', (u) => u.votes, 'num'],
      ['L/R/T/S', (u) => [u.left, u.right, u.tie, u.skip].join('/')],
      ['repeats (disagreed)', (u) => u.repeats + ' (' + u.repeat_disagreements + ')', 'num'],
      ['fast votes', (u) => u.fast_votes, 'num'], ['mean time', (u) => u.mean_decision_ms === null ? '–' : u.mean_decision_ms + ' ms', 'num'],
      ['vs PickScore', (u) => pct(u.pickscore_agreement) + ' of ' + u.pickscore_votes, 'num'],
      ['vs others', (u) => pct(u.agreement_with_others) + ' of ' + u.shared_vote_pairs, 'num'],
      ['flag', (u) => u.flagged ? 'flagged: ' + u.flag_reason : (u.verified ? '' : 'not verified')],
      ['set flag', () => ''],
    ], s.users, (tr, u) => {
      if (u.flagged) tr.className = 'flagged';
      const td = tr.lastChild;
      for (const [label, value] of [['flag', true], ['clear', false], ['auto', null]]) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'small';
        b.textContent = label;
        b.addEventListener('click', async () => { await call('POST', '/api/admin/flag', { user_id: u.id, flagged: value }); load(); });
        td.appendChild(b);
      }
    });
  }

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem('pickscore-admin-token', $('token').value);
    load();
  });
  $('refresh').addEventListener('click', load);
  $('exclude').addEventListener('change', load);
  load();
})();
)JS";

}  // namespace pickscore::collect::assets
