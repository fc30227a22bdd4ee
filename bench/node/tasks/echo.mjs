// Payload task: returns its argument, so the value is copied there and back.
export default function echo(v) { return v; }
