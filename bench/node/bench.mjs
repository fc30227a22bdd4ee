// Node side of luapool's benchmarks: Tinypool and Piscina.
//
//   node bench/node/bench.mjs POOL BENCH [key=value ...]
//
// POOL is tinypool, tinypool-process (Tinypool with runtime: 'child_process': one
// node process per worker) or piscina; BENCH is throughput, latency, cpu, payload,
// isolate, memory or startup. Sizes come as key=value arguments from bench/run.lua. One
// process makes one measurement of each metric of BENCH and prints one JSON object a
// line on stdout: {"metric", "unit", "value"}, or {"metric", "na": reason} when the
// pool cannot do it. Anything else goes to stderr.
const t0 = performance.now(); // before the pool library is imported (see startup)

import { fileURLToPath } from 'node:url';
import { readFileSync, readdirSync } from 'node:fs';

const [poolName, bench, ...kv] = process.argv.slice(2);
const opt = {};
for (const a of kv) {
  const i = a.indexOf('=');
  if (i > 0) opt[a.slice(0, i)] = Number(a.slice(i + 1));
}
const num = (k, d) => (opt[k] === undefined || Number.isNaN(opt[k]) ? d : opt[k]);

const task = (name) => fileURLToPath(new URL(`./tasks/${name}.mjs`, import.meta.url));
const emit = (metric, unit, value) =>
  process.stdout.write(JSON.stringify({ metric, unit, value }) + '\n');
const na = (metric, why) =>
  process.stdout.write(JSON.stringify({ metric, na: why }) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// tinypool-process: the same Tinypool, each worker a child process (its default
// serialization, 'json', and its default env).
const runtime = poolName === 'tinypool-process' ? { runtime: 'child_process' } : {};

async function loadPool() {
  if (poolName === 'tinypool' || poolName === 'tinypool-process') return (await import('tinypool')).default;
  if (poolName === 'piscina') return (await import('piscina')).default;
  throw new Error(`unknown pool ${poolName}`);
}

async function newPool(file, threads, extra = {}) {
  const Pool = await loadPool();
  return new Pool({ filename: task(file), minThreads: threads, maxThreads: threads, ...runtime, ...extra });
}

// n tasks, at most `limit` in flight: a new one is submitted as each settles.
function bounded(pool, n, limit) {
  return new Promise((resolve, reject) => {
    let submitted = 0, done = 0;
    const next = () => {
      if (submitted >= n) return;
      submitted++;
      pool.run(0).then(() => { if (++done === n) resolve(); else next(); }, reject);
    };
    for (let i = 0; i < limit && i < n; i++) next();
  });
}

async function warm(pool, n) { await bounded(pool, n, 64); }

// VmRSS of one process from /proc, in bytes (0 if it is gone).
function vmRss(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return 0;
}

// The pids of every process below `pid` (children of any of its threads, recursively).
function descendants(pid, out = []) {
  let tids = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    let kids = '';
    try { kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8'); } catch {}
    for (const c of kids.split(/\s+/).filter(Boolean)) { out.push(c); descendants(c, out); }
  }
  return out;
}

// RSS of the process tree: this process plus its worker processes (tinypool-process;
// thread pools have none), as the Lua sides count it (bench/common.lua tree_rss_bytes).
// process.memoryUsage().rss where there is no /proc.
function rssBytes() {
  const self = vmRss('self');
  if (!self) return process.memoryUsage().rss;
  return descendants(process.pid).reduce((sum, pid) => sum + vmRss(pid), self);
}

async function destroy(pool) { await pool.destroy(); }

const benches = {
  async throughput() {
    const pool = await newPool('empty', 2);
    await warm(pool, num('warm', 2000));
    const n1 = num('bounded', 50000), limit = num('inflight', 64);
    let s = performance.now();
    await bounded(pool, n1, limit);
    emit('bounded64', 'tasks/s', n1 / ((performance.now() - s) / 1000));

    const n2 = num('burst', 200000);
    s = performance.now();
    const all = new Array(n2);
    for (let i = 0; i < n2; i++) all[i] = pool.run(0);
    await Promise.all(all);
    emit('burst200k', 'tasks/s', n2 / ((performance.now() - s) / 1000));
    await destroy(pool);
  },

  async latency() {
    const pool = await newPool('empty', 2);
    await warm(pool, num('warm', 2000));
    for (let i = 0; i < 200; i++) await pool.run(0); // warm the one-at-a-time path too
    const n = num('n', 20000);
    const us = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      await pool.run(0);
      us[i] = (performance.now() - s) * 1000;
    }
    us.sort();
    const pct = (p) => us[Math.min(n - 1, Math.ceil((p / 100) * n) - 1)];
    emit('p50_us', 'us', pct(50));
    emit('p99_us', 'us', pct(99));
    await destroy(pool);
  },

  async cpu() {
    const jobs = num('jobs', 64), fibn = num('fibn', 27);
    const { fib } = await import('./tasks/fib.mjs');
    const timePool = async (threads) => {
      const pool = await newPool('fib', threads);
      // warm every worker: enough calls for the JIT to compile fib in each
      await Promise.all(Array.from({ length: 4 * threads }, () => pool.run(fibn)));
      const s = performance.now();
      await Promise.all(Array.from({ length: jobs }, () => pool.run(fibn)));
      const ms = performance.now() - s;
      await destroy(pool);
      return ms;
    };
    const t2 = await timePool(2);
    const t1 = await timePool(1);
    let sink = 0;
    for (let i = 0; i < 4; i++) sink += fib(fibn);
    const s = performance.now();
    for (let i = 0; i < jobs; i++) sink += fib(fibn);
    const tin = performance.now() - s;
    if (sink < 0) console.error(sink);
    emit('speedup_2v1', 'x', t1 / t2);
    emit('overhead_1v_inline_pct', '%', ((t1 - tin) / tin) * 100);
  },

  async payload() {
    const n = num('records', 100000);
    const make = (k) => {
      const r = new Array(k);
      for (let i = 0; i < k; i++) r[i] = { id: i + 1, name: 'item' + (i + 1), tags: ['a', 'b'] };
      return r;
    };
    const pool = await newPool('echo', 2);
    await warm(pool, 200);
    const small = make(1000);
    for (let i = 0; i < 3; i++) await pool.run(small);
    const records = make(n);
    const s = performance.now();
    const back = await pool.run(records);
    const ms = performance.now() - s;
    if (back.length !== n || back[n - 1].name !== 'item' + n) throw new Error('payload came back wrong');
    emit('roundtrip_ms', 'ms', ms);
    await destroy(pool);
  },

  async isolate() {
    if (poolName === 'piscina') return na('ms_per_task', `${poolName} has no isolateWorkers`);
    const pool = await newPool('empty', 2, { isolateWorkers: true });
    for (let i = 0; i < 3; i++) await pool.run(0);
    const n = num('n', 200);
    const s = performance.now();
    for (let i = 0; i < n; i++) await pool.run(0);
    emit('ms_per_task', 'ms', (performance.now() - s) / n);
    await destroy(pool);
  },

  async memory() {
    const workers = num('workers', 8);
    await loadPool();
    await sleep(100);
    const rss0 = rssBytes();
    const pool = await newPool('sleep', workers);
    // one sleeping task per worker, so every worker is up and has run a task
    await Promise.all(Array.from({ length: workers }, () => pool.run(num('sleep_ms', 100))));
    await sleep(200); // idle
    const rss8 = rssBytes();
    emit('mib_per_worker', 'MiB', (rss8 - rss0) / workers / 1048576);
    await destroy(pool);
  },

  async startup() {
    // t0 was taken before the pool library was imported; bench/run.lua also times the
    // whole process from spawn to this line.
    const pool = await newPool('empty', 2);
    await pool.run(0);
    emit('first_result_ms', 'ms', performance.now() - t0);
    await destroy(pool);
  },
};

if (!benches[bench]) {
  console.error(`usage: node bench.mjs tinypool|tinypool-process|piscina ${Object.keys(benches).join('|')} [key=value ...]`);
  process.exit(2);
}
try {
  await benches[bench]();
} catch (e) {
  console.error(`${poolName} ${bench}: ${e && e.stack || e}`);
  process.exit(1);
}
process.exit(0);
