/** Signals the supervisor passes to the command's whole process tree. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

/** Forwarded signals that also end a wait for dependencies, since they ask the container to stop. */
export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGQUIT'];

/**
 * Installs handlers for every forwarded signal and returns a function that removes them. A handler
 * is always installed, because Node as PID 1 would otherwise ignore SIGTERM and SIGINT.
 */
export function onSignals(handler: (signal: NodeJS.Signals) => void): () => void {
  for (const signal of FORWARDED_SIGNALS) {
    process.on(signal, handler);
  }
  return () => {
    for (const signal of FORWARDED_SIGNALS) {
      process.off(signal, handler);
    }
  };
}
