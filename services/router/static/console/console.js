// The shardkv web console: polls the router's public GET /status and GET /cluster/map, and sends
// the user's commands to the same API a curl user has (/get, /put, /delete, /admin/*). Plain
// browser JavaScript with no build step, served from a file because the page's CSP forbids inline
// scripts. Everything the router says is put into the page with textContent, never as HTML, so a
// key, a URL or an error message cannot inject markup.
'use strict';

(() => {
  /** The issue asks for a live view; once a second is cheap for the router (one /status per node). */
  const POLL_INTERVAL_MS = 1000;
  /** A router that does not answer within this is shown as unreachable rather than left pending. */
  const REQUEST_TIMEOUT_MS = 5000;
  /** An error body that is not our JSON (a proxy's HTML page) is cut to this much. */
  const RAW_ERROR_CHARS_MAX = 200;

  const $ = (id) => document.getElementById(id);

  /** An API failure as the router names it (`{"error":{"code","message"}}`), or as we name a transport failure. */
  class ApiError extends Error {
    constructor(code, message, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  const describe = (err) => (err instanceof ApiError ? `${err.code}: ${err.message}` : String(err));

  /**
   * One call to the router; resolves to the parsed JSON answer or rejects with an ApiError. Admin
   * calls read the token from the password field at the moment they are sent: it is kept nowhere
   * else (no variable, no storage), so closing the tab forgets it.
   */
  async function api(method, path, options = {}) {
    const headers = {};
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.admin) headers.authorization = `Bearer ${adminToken()}`;
    let res;
    try {
      res = await fetch(path, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body), cache: 'no-store', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (err) {
      throw new ApiError('unreachable', `the router did not answer (${err.message})`, 0);
    }
    const text = await res.text();
    const json = parseJson(text);
    if (res.ok) return json;
    const e = json && json.error;
    throw new ApiError(e && e.code ? e.code : `http_${res.status}`, e && e.message ? e.message : text.slice(0, RAW_ERROR_CHARS_MAX), res.status);
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  }

  function adminToken() {
    const token = $('token').value;
    // Refused here rather than sent empty: the router's 401 would not say what to do.
    if (token === '') throw new ApiError('no_token', 'type the admin token (CLUSTER_TOKEN, printed by npm start) into the field at the top', 0);
    return token;
  }

  function showResult(el, ok, text) {
    el.textContent = text;
    el.classList.toggle('error', !ok);
    el.classList.toggle('ok', ok);
  }

  // ---- live view ----

  let pollTimer;
  let polling = false;
  let pollAgain = false;

  /** One refresh at a time: a command's "refresh now" during a poll runs right after it instead of beside it. */
  async function refresh() {
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    try {
      const [status, map] = await Promise.all([api('GET', '/status'), api('GET', '/cluster/map')]);
      renderCluster(status, map);
      renderShards(status, map);
      showResult($('live'), true, `live · updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      showResult($('live'), false, `not updating: ${describe(err)}`);
    } finally {
      polling = false;
      clearTimeout(pollTimer);
      pollTimer = setTimeout(refresh, pollAgain ? 0 : POLL_INTERVAL_MS);
      pollAgain = false;
    }
  }

  function renderCluster(status, map) {
    const c = status.coordinator;
    $('coordinator').textContent = c === null ? 'none elected' : `${c.id} at ${c.url} (generation ${c.generation}, since ${new Date(c.since).toLocaleString()})`;
    $('router').textContent = `${status.router.id} at ${status.router.url}${status.router.coordinator ? ' — coordinating' : ''}`;
    $('control-plane').textContent = status.controlPlane;
    $('map-version').textContent = String(map.version);
    $('migration').textContent = migrationText(map.migration);
  }

  function migrationText(m) {
    if (m === null || m === undefined) return 'none';
    const p = m.progress;
    const progress = p === null ? '' : `, ${p.phase}: ${p.keysCopied} keys copied, ${p.entriesTailed} entries tailed`;
    return `${m.kind} ${m.shard}: ${m.state}, ${m.slotsMoving} slots moving${progress}`;
  }

  /** Slots each shard owns, from the map's half-open runs `[from, to, owner]`; null before any resharding (ring placement). */
  function slotCounts(map) {
    if (!Array.isArray(map.slots)) return null;
    const counts = new Map();
    for (const [from, to, owner] of map.slots) counts.set(owner, (counts.get(owner) || 0) + (to - from));
    return counts;
  }

  /** Rows are kept and updated in place, so a button is not replaced under the pointer once a second. */
  const rows = new Map();

  function renderShards(status, map) {
    const slots = slotCounts(map);
    const inMap = new Set(map.shards.map((s) => s.id));
    const seen = new Set();
    for (const s of status.shards) {
      seen.add(s.id);
      if (!rows.has(s.id)) rows.set(s.id, createRow(s.id));
      updateRow(rows.get(s.id), s, { slots: slots === null ? null : slots.get(s.id) || 0, inMap: inMap.has(s.id), migrating: map.migration && map.migration.shard === s.id });
    }
    for (const [id, row] of rows) {
      if (seen.has(id)) continue;
      row.tr.remove();
      rows.delete(id);
    }
    // Appending an attached row moves it: the table follows the router's order.
    const body = $('shards').tBodies[0];
    for (const s of status.shards) body.appendChild(rows.get(s.id).tr);
  }

  function createRow(id) {
    const tr = document.createElement('tr');
    tr.dataset.shard = id;
    const cell = (name) => {
      const td = document.createElement('td');
      td.className = name;
      tr.appendChild(td);
      return td;
    };
    const row = { tr, id: cell('id'), leader: cell('leader'), follower: cell('follower'), epoch: cell('epoch'), inSync: cell('in-sync'), lag: cell('lag'), slots: cell('slots') };
    const actions = cell('actions');
    actions.append(button('Failover', 'failover', () => failover(id)), button('Remove', 'remove', () => removeShard(id)));
    return row;
  }

  function button(label, className, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.className = className;
    b.addEventListener('click', () => runCommand(b, onClick));
    return b;
  }

  function updateRow(row, s, extra) {
    row.id.textContent = s.id + (extra.inMap ? '' : ' (not in map yet)') + (extra.migrating ? ' (migrating)' : '');
    setNode(row.leader, s.leader);
    setNode(row.follower, s.follower);
    row.epoch.textContent = String(s.epoch);
    row.inSync.textContent = s.inSync ? 'yes' : 'no';
    row.inSync.classList.toggle('bad', !s.inSync);
    row.lag.textContent = s.replicationLagEntries === null ? '—' : String(s.replicationLagEntries);
    row.slots.textContent = extra.slots === null ? 'ring' : String(extra.slots);
  }

  /** A node's URL, and what its own /status says (or that the router could not reach it). */
  function setNode(td, n) {
    const detail = n.reachable === false ? 'unreachable' : `${n.state || n.role || '?'} · seq ${n.seq ?? '?'}`;
    td.replaceChildren(document.createTextNode(n.url), document.createElement('br'), small(detail));
    td.classList.toggle('bad', n.reachable === false);
  }

  function small(text) {
    const el = document.createElement('small');
    el.textContent = text;
    return el;
  }

  // ---- commands ----

  /** A command disables its button while it runs, and shows its answer or error under the table. */
  async function runCommand(b, command) {
    b.disabled = true;
    try {
      showResult($('admin-result'), true, await command());
      refresh();
    } catch (err) {
      showResult($('admin-result'), false, describe(err));
    } finally {
      b.disabled = false;
    }
  }

  async function failover(id) {
    const r = await api('POST', `/admin/failover?shard=${encodeURIComponent(id)}`, { admin: true });
    return `${r.shard}: failed over; epoch ${r.epoch}, leader ${r.leader}, follower ${r.follower}`;
  }

  async function removeShard(id) {
    // The one command here that moves data off a shard for good: asked once more.
    if (!window.confirm(`Remove ${id}? Its slots move to the other shards.`)) return `${id}: not removed`;
    const r = await api('DELETE', `/admin/shards/${encodeURIComponent(id)}`, { admin: true });
    return `removing ${r.migration.shard}: ${r.migration.state}, ${r.migration.slotsMoving} slots moving (map version ${r.mapVersion})`;
  }

  async function addShard() {
    const body = { id: $('add-id').value.trim(), leader: $('add-leader').value.trim(), follower: $('add-follower').value.trim() };
    const r = await api('POST', '/admin/shards', { body, admin: true });
    return `adding ${r.migration.shard}: ${r.migration.state}, ${r.migration.slotsMoving} slots moving (map version ${r.mapVersion})`;
  }

  /** Get, put and delete go through the public API, exactly as a client's would. */
  async function keyCommand(which) {
    const key = $('kv-key').value;
    const q = `key=${encodeURIComponent(key)}`;
    if (which === 'get') return api('GET', `/get?${q}`);
    if (which === 'delete') return api('DELETE', `/delete?${q}`);
    return api('POST', '/put', { body: { key, value: $('kv-value').value } });
  }

  function wireForms() {
    $('kv').addEventListener('submit', async (e) => {
      e.preventDefault();
      const out = $('kv-result');
      try {
        showResult(out, true, JSON.stringify(await keyCommand(e.submitter ? e.submitter.value : 'get')));
      } catch (err) {
        showResult(out, false, describe(err));
      }
    });
    $('add-shard').addEventListener('submit', (e) => {
      e.preventDefault();
      runCommand($('add-submit'), addShard);
    });
  }

  wireForms();
  refresh();
})();
