// Blocks the worker thread for `ms` milliseconds without spinning.
const cell = new Int32Array(new SharedArrayBuffer(4));
export default function sleep(ms) { Atomics.wait(cell, 0, 0, ms); }
