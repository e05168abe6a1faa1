package runnerhost

// DrainedDropIn is where a drain leaves the drop-in that keeps the runner
// from starting again.
const DrainedDropIn = drainedDropIn
