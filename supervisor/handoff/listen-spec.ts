/**
 * Listening sockets of a hot-upgrade sidecar.
 * - `tcp:[HOST:]PORT`: the supervisor opens the socket and gives it to its command by systemd
 *   socket activation (LISTEN_FDS from fd 3, LISTEN_FDNAMES, LISTEN_PID). It hands the same open
 *   socket to the other slot's supervisor over a Unix socket in the shared volume, so connections
 *   that wait in the accept queue during a hand-off are taken by the new version.
 * - `reuseport:PORT`: the command binds the port itself with SO_REUSEPORT, so both versions
 *   listen at once during a hand-off. The supervisor only checks that the new one listens.
 */
export type ListenSpec = { kind: 'tcp'; host: string; port: number } | { kind: 'reuseport'; port: number };

export const LISTEN_FORMS = 'tcp:PORT, tcp:HOST:PORT, tcp:[IPV6]:PORT or reuseport:PORT';

/** Address of `tcp:PORT`: every IPv4 interface of the pod, as most servers bind by default. */
const DEFAULT_HOST = '0.0.0.0';

function parsePort(text: string): number | undefined {
  const port = Number(text);
  return /^\d+$/.test(text) && port > 0 && port < 65536 ? port : undefined;
}

/** Parses one `--listen` value, throwing an error that names the value and the accepted forms. */
export function parseListen(value: string): ListenSpec {
  const [kind, ...rest] = value.trim().split(':');
  const address = rest.join(':');
  if (kind === 'reuseport') {
    const port = parsePort(address);
    if (port !== undefined) {
      return { kind: 'reuseport', port };
    }
  }
  if (kind === 'tcp') {
    const match = /^(?:\[([0-9a-fA-F:.]+)\]:|([^:[\]]+):)?(\d+)$/.exec(address);
    const port = match ? parsePort(match[3]!) : undefined;
    if (match && port !== undefined) {
      return { kind: 'tcp', host: match[1] ?? match[2] ?? DEFAULT_HOST, port };
    }
  }
  throw new Error(`Invalid listener ${JSON.stringify(value)}: expected ${LISTEN_FORMS}.`);
}

/** Name of a socket in LISTEN_FDNAMES, which allows no colon: `tcp-8080`, or `tcp-127.0.0.1-8080` with a host. */
export function listenerName(spec: ListenSpec): string {
  if (spec.kind === 'reuseport' || spec.host === DEFAULT_HOST) {
    return `${spec.kind}-${spec.port}`;
  }
  return `tcp-${spec.host.replaceAll(':', '_')}-${spec.port}`;
}

export function describeListener(spec: ListenSpec): string {
  return spec.kind === 'reuseport' ? `reuseport:${spec.port}` : `tcp:${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`;
}
