import pino, { type Logger } from 'pino';
import type { LogLevel } from './log-levels.js';

export type { Logger } from 'pino';
export type { LogLevel } from './log-levels.js';

/**
 * Creates tandem's JSON logger on stderr. Stdout is never used, because it belongs to the wrapped
 * command. The destination is synchronous so that the last lines before an exit are not lost.
 */
export function createLogger(level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: 2, sync: true }),
  );
}
