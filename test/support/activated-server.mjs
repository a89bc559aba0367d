// An HTTP server that takes its listening sockets by systemd socket activation, as a sidecar of the
// hot-upgrade tests. It responds `version=<VERSION>`, and `/slow?ms=N` responds after N ms. On
// SIGTERM it drains: it stops accepting, sends `Connection: close` with every later response, and
// exits once its connections are closed, or after DRAIN_MS.
import http from 'node:http';

const version = process.env.VERSION ?? process.env.SIDECARSET_VERSION ?? '?';
const fds = Number(process.env.LISTEN_FDS);
if (!(fds >= 1)) {
  console.error(`LISTEN_FDS is ${JSON.stringify(process.env.LISTEN_FDS)}; expected 1 or more sockets from fd 3`);
  process.exit(3);
}
if (process.env.LISTEN_PID !== undefined && Number(process.env.LISTEN_PID) !== process.pid) {
  console.error(`LISTEN_PID is ${process.env.LISTEN_PID}, not this process (${process.pid})`);
  process.exit(3);
}

let draining = false;
const connections = new Set();
const handle = (request, response) => {
  const url = new URL(request.url, 'http://localhost');
  const answer = () => {
    if (draining) {
      response.setHeader('Connection', 'close');
    }
    response.setHeader('X-Version', version);
    response.end(`version=${version}\n`);
  };
  if (url.pathname === '/slow') {
    setTimeout(answer, Number(url.searchParams.get('ms') ?? 500));
  } else {
    answer();
  }
};
/** Sets up one server: no keep-alive timeout, connection tracking, and no closing of idle connections. */
function setUp(server) {
  // A keep-alive timeout would close idle connections on the server's side, which races with a
  // client that sends at that moment. The load never leaves a connection idle for long.
  server.keepAliveTimeout = 0;
  server.on('connection', (socket) => {
    connections.add(socket);
    socket.on('close', () => {
      connections.delete(socket);
      if (draining && connections.size === 0) {
        process.exit(0);
      }
    });
  });
  // http.Server#close also closes idle keep-alive connections, which races with a request in flight
  // on them. This server closes each connection after its next response instead.
  server.closeIdleConnections = () => undefined;
  return server;
}

// One server per inherited socket, from fd 3 on, as socket activation numbers them.
const servers = Array.from({ length: fds }, () => setUp(http.createServer(handle)));

process.on('SIGTERM', () => {
  draining = true;
  for (const server of servers) {
    server.close();
  }
  if (connections.size === 0) {
    process.exit(0);
  }
  setTimeout(() => process.exit(0), Number(process.env.DRAIN_MS ?? 10_000)).unref();
});

servers.forEach((server, index) => server.listen({ fd: 3 + index }));
console.log(`serving version ${version} on fds 3 to ${2 + fds} (${process.env.LISTEN_FDNAMES})`);
