// Empty task: returns nothing.
export default function empty() {}
