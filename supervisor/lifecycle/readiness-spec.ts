/**
 * A sidecar's readiness check, as written in `--readiness` or the pod spec.
 * - `started`: ready once its command runs.
 * - `file:PATH`: the file exists.
 * - `tcp:PORT`: a TCP connection to 127.0.0.1:PORT succeeds.
 * - `http://127.0.0.1:PORT/PATH`: a GET returns 2xx.
 * - `exec:COMMAND ARGS`: the command exits 0. It is split on spaces and runs without a shell, so
 *   it works in images that have none.
 */
export type Readiness =
  | { kind: 'started' }
  | { kind: 'file'; path: string }
  | { kind: 'tcp'; port: number }
  | { kind: 'http'; url: string }
  | { kind: 'exec'; command: string };

export const READINESS_FORMS = 'started, file:PATH, tcp:PORT, http://127.0.0.1:PORT/PATH or exec:COMMAND';

/** Parses a readiness check, throwing an error that names the value and the accepted forms. */
export function parseReadiness(value: string): Readiness {
  if (value === 'started') {
    return { kind: 'started' };
  }
  if (value.startsWith('file:') && value.length > 'file:'.length) {
    return { kind: 'file', path: value.slice('file:'.length) };
  }
  if (value.startsWith('tcp:')) {
    const port = Number(value.slice('tcp:'.length));
    if (Number.isInteger(port) && port > 0 && port < 65536) {
      return { kind: 'tcp', port };
    }
  }
  if (value.startsWith('http://')) {
    try {
      const url = new URL(value);
      return { kind: 'http', url: url.href };
    } catch {
      // Falls through to the error below.
    }
  }
  if (value.startsWith('exec:') && value.slice('exec:'.length).trim() !== '') {
    return { kind: 'exec', command: value.slice('exec:'.length).trim() };
  }
  throw new Error(`Invalid readiness check ${JSON.stringify(value)}: expected ${READINESS_FORMS}.`);
}
