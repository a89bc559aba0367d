import { constants } from 'node:os';
import { InvalidArgumentError } from 'commander';
import { LOG_LEVELS, type LogLevel } from '../log-levels.js';
import { isContainerName } from '../protocol/pod.js';

/**
 * Parsers for option values. Each throws commander's InvalidArgumentError, so the message names
 * the option and the rejected value, and ends with what is accepted.
 */

const MS_PER_UNIT = { ms: 1, s: 1000, m: 60_000 } as const;

/** Maximum delay of setTimeout. Longer delays fire at once with a warning. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function parseContainerName(value: string): string {
  if (!isContainerName(value)) {
    throw new InvalidArgumentError('Expected a Kubernetes container name: at most 63 lower-case letters, digits and dashes, starting and ending with a letter or digit.');
  }
  return value;
}

/** Parses a directory option, rejecting a value that is really the next option. */
export function parseDirectory(value: string): string {
  if (value.startsWith('-')) {
    throw new InvalidArgumentError('Expected a directory path; the value looks like another option, so the path is probably missing.');
  }
  return value;
}

/** Parses `1500ms`, `5s`, `2m` or a bare number of seconds into milliseconds. */
export function parseDurationMs(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!match) {
    throw new InvalidArgumentError('Expected a duration such as 500ms, 5s or 2m (a bare number is seconds).');
  }

  const amount = Number(match[1]);
  const unit = (match[2] ?? 's') as keyof typeof MS_PER_UNIT;
  const ms = Math.round(amount * MS_PER_UNIT[unit]);
  if (ms > MAX_TIMER_MS) {
    throw new InvalidArgumentError(`Expected a duration of at most ${MAX_TIMER_MS}ms (about 24 days), the longest timer Node.js supports.`);
  }
  return ms;
}

const BYTES_PER_UNIT = { '': 1, k: 1000, Ki: 1024, M: 1000 ** 2, Mi: 1024 ** 2, G: 1000 ** 3, Gi: 1024 ** 3 } as const;

/** Parses a size in bytes with an optional Kubernetes quantity suffix: `512Ki`, `10Mi`, `1G`. */
export function parseByteSize(value: string): number {
  const match = /^(\d+)(k|Ki|M|Mi|G|Gi)?$/.exec(value.trim());
  if (!match) {
    throw new InvalidArgumentError('Expected a size in bytes such as 1048576, 512Ki or 10Mi.');
  }
  return Number(match[1]) * BYTES_PER_UNIT[(match[2] ?? '') as keyof typeof BYTES_PER_UNIT];
}

/** Parses the log rotation size, at least 1Ki so that a file contains more than a few records. */
export function parseLogMaxSize(value: string): number {
  const bytes = parseByteSize(value);
  if (bytes < 1024) {
    throw new InvalidArgumentError('Expected a size of at least 1Ki.');
  }
  return bytes;
}

export function parsePositiveInteger(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) {
    throw new InvalidArgumentError('Expected an integer of 1 or more.');
  }
  return Number(value);
}

export function parseInteger(value: string): number {
  if (!/^-?\d+$/.test(value.trim())) {
    throw new InvalidArgumentError('Expected an integer.');
  }
  return Number(value);
}

/** Parses a signal given as `SIGTERM`, `TERM` or its number, and returns its name. */
export function parseSignal(value: string): NodeJS.Signals {
  const upper = value.trim().toUpperCase();
  const signals = constants.signals as Record<string, number>;
  if (/^\d+$/.test(upper)) {
    const name = Object.keys(signals).find((key) => signals[key] === Number(upper));
    if (name) {
      return name as NodeJS.Signals;
    }
  }

  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  if (name in signals) {
    return name as NodeJS.Signals;
  }
  throw new InvalidArgumentError('Expected a signal name such as SIGTERM, TERM or QUIT, or its number.');
}

export function parseLogLevel(value: string): LogLevel {
  if ((LOG_LEVELS as readonly string[]).includes(value)) {
    return value as LogLevel;
  }
  throw new InvalidArgumentError(`Expected one of ${LOG_LEVELS.join(', ')}.`);
}

export function parseBoolean(value: string): boolean {
  if (['true', '1', 'yes'].includes(value.toLowerCase())) {
    return true;
  }
  if (['false', '0', 'no'].includes(value.toLowerCase())) {
    return false;
  }
  throw new InvalidArgumentError('Expected true or false.');
}

/** Parses a command given as a JSON array of strings (as in a Kubernetes exec hook) or as words split on spaces. */
export function parseCommand(value: string): string[] {
  const trimmed = value.trim();
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new InvalidArgumentError('Expected a JSON array of strings such as ["sh", "-c", "echo done"].');
    }
    if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((word) => typeof word === 'string')) {
      throw new InvalidArgumentError('Expected a non-empty JSON array of strings such as ["sh", "-c", "echo done"].');
    }
    return parsed as string[];
  }
  const words = trimmed.split(/\s+/).filter(Boolean);
  if (words.length === 0) {
    throw new InvalidArgumentError('Expected a command.');
  }
  return words;
}
