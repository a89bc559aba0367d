import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { devRuntimeDir, findRepoRoot, RUNTIME_PATHS } from '../../agent/runtime/build.js';
import {
  addonPathOf,
  closeFd,
  createListener,
  isListeningSocket,
  receiveFds,
  sendFds,
  sendFdsToSocket,
  socketAddress,
} from '../../supervisor/handoff/fd-passing.js';

// Process A is this test process, which owns the listeners and serves them on a Unix socket.
// Process B is a separate Node.js process that receives them through the compiled wrapper in
// dist/, which `npm test` builds first; C is a child that B starts with a socket in stdio.

const repoRoot = findRepoRoot(fileURLToPath(import.meta.url));
const wrapperUrl = pathToFileURL(path.join(repoRoot, 'dist', 'supervisor', 'handoff', 'fd-passing.js')).href;
const runtimeRoot = devRuntimeDir(repoRoot);
/** Runs the runtime's Node.js 24 the way the launcher does, through the runtime's loader and libraries. */
const RUNTIME_NODE = [
  path.join(runtimeRoot, RUNTIME_PATHS.loader),
  '--library-path',
  path.join(runtimeRoot, RUNTIME_PATHS.libraries),
  path.join(runtimeRoot, RUNTIME_PATHS.node),
];
const O_CLOEXEC = 0o2000000;

/**
 * Process B, which receives the sockets from the path in argv. In mode `serve` it serves the first
 * one itself. In mode `child` it hands it to a child C in stdio position 3 and closes its own copy.
 * In mode `report-error` it prints the error of receiveFds and its descriptor count before and after.
 * In mode `payload` it prints the size and SHA-256 of the payload.
 */
const RECEIVER = `
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
const [wrapperUrl, socketPath, mode] = process.argv.slice(2);
const { closeFd, isListeningSocket, receiveFds, socketAddress } = await import(wrapperUrl);
const report = (line) => console.log(JSON.stringify(line));
const openFds = () => fs.readdirSync('/proc/self/fd').length;
const fdFlags = (fd) => parseInt(/^flags:\\s+(\\d+)/m.exec(fs.readFileSync('/proc/self/fdinfo/' + fd, 'utf8'))[1], 8);

if (mode === 'report-error') {
  const before = openFds();
  try {
    receiveFds(socketPath, 5000);
    report({ event: 'received' });
  } catch (error) {
    report({ event: 'error', code: error.code, message: error.message, before, after: openFds() });
  }
  process.exit(0);
}

const { fds, payload } = receiveFds(socketPath, 5000);
if (mode === 'payload') {
  report({ event: 'payload', fds: fds.length, bytes: payload.length, sha256: createHash('sha256').update(payload).digest('hex') });
  process.exit(0);
}
const fd = fds[0];
report({
  event: 'received',
  fds,
  payload: payload.toString(),
  address: socketAddress(fd),
  listening: isListeningSocket(fd),
  flags: fdFlags(fd),
  node: process.version,
});

if (mode === 'serve') {
  net.createServer((connection) => connection.on('data', (data) => connection.end('B ' + data))).listen({ fd }, () => report({ event: 'serving' }));
} else if (mode === 'child') {
  // A child started without the socket in its stdio must not inherit it.
  const socketLink = 'socket:[' + fs.fstatSync(fd).ino + ']';
  const listing = execFileSync(process.execPath, ['-e', ${JSON.stringify(
    "const fs = require('fs'); console.log(JSON.stringify(fs.readdirSync('/proc/self/fd').map((n) => { try { return fs.readlinkSync('/proc/self/fd/' + n); } catch { return ''; } })))",
  )}]);
  report({ event: 'other-child', socketLink, links: JSON.parse(listing) });

  // The shell prints the flags of fd 3 as exec left them, before it execs Node.js, which would
  // set close-on-exec on the descriptor again at its start.
  const server = ${JSON.stringify(
    "require('net').createServer((c) => c.on('data', (d) => c.end('C ' + d))).listen({ fd: 3 }, () => console.log(JSON.stringify({ event: 'child-serving', pid: process.pid })))",
  )};
  const shell = ${JSON.stringify(`printf '{"event":"child-flags","flags":"%s"}\\n' "$(sed -n 's/^flags:[[:space:]]*//p' /proc/self/fdinfo/3)" && exec "$0" -e "$1"`)};
  spawn('/bin/sh', ['-c', shell, process.execPath, server], { stdio: ['ignore', 'inherit', 'inherit', fd] });
  // spawn returns after the child has exec'ed, so the child already has its own copy.
  closeFd(fd);
  report({ event: 'closed' });
}
`;

let workDir: string;
let receiverScript: string;
const children: ChildProcess[] = [];
const extraPids: number[] = [];
const servers: net.Server[] = [];
const ownedFds: number[] = [];
/** Errors that sendFdsToSocket threw in the server of serveFds. */
const sendErrors: Error[] = [];

beforeAll(async () => {
  workDir = await mkdtemp(path.join(os.tmpdir(), 'tandem-fd-passing-'));
  receiverScript = path.join(workDir, 'receiver.mjs');
  await writeFile(receiverScript, RECEIVER);
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    child.kill('SIGKILL');
  }
  for (const pid of extraPids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // The process has already exited.
    }
  }
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  sendErrors.length = 0;
  for (const fd of ownedFds.splice(0)) {
    closeFd(fd);
  }
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

interface Report {
  event: string;
  [key: string]: unknown;
}

/** Starts a process whose stdout is JSON lines, and returns it with a function that waits for the next line of an event. */
function startProcess(command: readonly string[]): { child: ChildProcess; next: (event: string) => Promise<Report> } {
  const child = spawn(command[0] as string, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const reports: Report[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    reports.push(JSON.parse(line) as Report);
    waiters.splice(0).forEach((wake) => wake());
  });
  let exited = false;
  child.on('exit', () => {
    exited = true;
    waiters.splice(0).forEach((wake) => wake());
  });

  async function next(event: string): Promise<Report> {
    for (;;) {
      const index = reports.findIndex((report) => report.event === event);
      if (index >= 0) {
        return reports.splice(index, 1)[0] as Report;
      }
      if (exited) {
        throw new Error(`the process exited before it reported ${event}; stderr: ${stderr}`);
      }
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  }
  return { child, next };
}

/**
 * Serves `fds` with `payload` on a Unix socket in the work directory, as a supervisor does: the
 * event loop accepts, and each connection gets one sendFdsToSocket.
 */
async function serveFds(name: string, fds: number[], payload: string): Promise<string> {
  const socketPath = path.join(workDir, `${name}.sock`);
  const server = net.createServer({ pauseOnConnect: true }, (connection) => {
    try {
      sendFdsToSocket(connection, fds, payload);
    } catch (error) {
      sendErrors.push(error as Error);
    }
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return socketPath;
}

/** Sends `text` on a TCP connection and returns everything the server sends before it closes the connection. */
function exchange(connection: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    connection.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    connection.on('end', () => resolve(answer));
    connection.on('error', reject);
    connection.write(text);
  });
}

function connectTo(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const connection = net.connect(port, '127.0.0.1', () => resolve(connection));
    connection.on('error', reject);
  });
}

describe('createListener', () => {
  it('listens on IPv4 with a chosen port', () => {
    const fd = createListener('127.0.0.1', 0);
    ownedFds.push(fd);
    const address = socketAddress(fd);
    expect(address).toMatchObject({ family: 'IPv4', address: '127.0.0.1' });
    expect((address as { port: number }).port).toBeGreaterThan(0);
    expect(isListeningSocket(fd)).toBe(true);
  });

  it('listens on IPv6', () => {
    const fd = createListener('::1', 0);
    ownedFds.push(fd);
    expect(socketAddress(fd)).toMatchObject({ family: 'IPv6', address: '::1' });
  });

  it('sets close-on-exec and blocking mode', () => {
    const fd = createListener('127.0.0.1', 0);
    ownedFds.push(fd);
    const flags = parseInt(/^flags:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
    expect(flags & O_CLOEXEC).toBe(O_CLOEXEC);
    expect(flags & 0o4000).toBe(0);
  });

  it('names the address in EADDRINUSE', () => {
    const fd = createListener('127.0.0.1', 0);
    ownedFds.push(fd);
    const port = (socketAddress(fd) as { port: number }).port;
    // SO_REUSEADDR does not allow a second listener on the same port.
    expect(() => createListener('127.0.0.1', port)).toThrow(`createListener: bind 127.0.0.1:${port}: EADDRINUSE`);
  });

  it('rejects invalid hosts and ports', () => {
    expect(() => createListener('localhost', 0)).toThrow('createListener: invalid address localhost:0');
    expect(() => createListener('', 0)).toThrow('createListener: invalid host ""');
    expect(() => createListener('127.0.0.1', 65536)).toThrow('createListener: invalid port 65536');
    expect(() => createListener('127.0.0.1', 0, 0)).toThrow('createListener: invalid backlog 0');
  });
});

describe('isListeningSocket and socketAddress', () => {
  it('returns false for a file that is not a socket', () => {
    expect(isListeningSocket(0)).toBe(false);
  });

  it('names EBADF for a closed descriptor', () => {
    const fd = createListener('127.0.0.1', 0);
    closeFd(fd);
    expect(() => isListeningSocket(fd)).toThrow(`isListeningSocket: getsockopt(SO_ACCEPTCONN) fd ${fd}: EBADF`);
    expect(() => socketAddress(fd)).toThrow(`socketAddress: getsockname fd ${fd}: EBADF`);
    expect(() => closeFd(fd)).toThrow(`closeFd: close fd ${fd}: EBADF`);
  });
});

describe.each([
  ['the Node.js of the tests', [process.execPath], new RegExp(`^${process.version.replaceAll('.', '\\.')}$`)],
  ['the runtime Node.js 24', RUNTIME_NODE, /^v24\./],
] as const)('handing a listener to %s', (_name, nodeCommand, version) => {
  it('keeps the queued connection and new ones', async () => {
    const fd = createListener('127.0.0.1', 0);
    ownedFds.push(fd);
    const port = (socketAddress(fd) as { port: number }).port;
    // The kernel completes this connection in the accept queue, where it waits for B's accept.
    const queued = await connectTo(port);
    const socketPath = await serveFds('serve', [fd], JSON.stringify({ names: ['http'] }));

    const receiver = startProcess([...nodeCommand, receiverScript, wrapperUrl, socketPath, 'serve']);
    const received = await receiver.next('received');
    expect(received.node).toMatch(version);
    expect(received.payload).toBe('{"names":["http"]}');
    expect(received.address).toEqual({ family: 'IPv4', address: '127.0.0.1', port });
    expect(received.listening).toBe(true);
    expect((received.flags as number) & O_CLOEXEC).toBe(O_CLOEXEC);
    await receiver.next('serving');
    expect(await exchange(queued, 'queued')).toBe('B queued');

    closeFd(ownedFds.pop()!);
    expect(await exchange(await connectTo(port), 'after close')).toBe('B after close');
  });
});

describe('handing a listener on to a child', () => {
  it('serves from stdio position 3', async () => {
    const fd = createListener('127.0.0.1', 0);
    ownedFds.push(fd);
    const port = (socketAddress(fd) as { port: number }).port;
    const socketPath = await serveFds('child', [fd], '{}');
    const receiver = startProcess([process.execPath, receiverScript, wrapperUrl, socketPath, 'child']);
    await receiver.next('received');
    closeFd(ownedFds.pop()!);

    const otherChild = await receiver.next('other-child');
    expect(otherChild.links).not.toContain(otherChild.socketLink);
    await receiver.next('closed');
    const childFlags = await receiver.next('child-flags');
    expect(parseInt(childFlags.flags as string, 8) & O_CLOEXEC).toBe(0);
    const childServing = await receiver.next('child-serving');
    extraPids.push(childServing.pid as number);
    expect(await exchange(await connectTo(port), 'hello')).toBe('C hello');
  });
});

describe('receiveFds errors', () => {
  it('names ENOENT and the missing path', () => {
    const missing = path.join(workDir, 'missing.sock');
    expect(() => receiveFds(missing, 1000)).toThrow(`receiveFds: connect ${missing}: ENOENT`);
    try {
      receiveFds(missing, 1000);
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOENT');
      expect((error as NodeJS.ErrnoException).path).toBe(missing);
    }
  });

  it('times out on a silent peer', async () => {
    // The server is in this process, whose event loop receiveFds blocks, so the kernel accepts the
    // connection into the backlog and nothing is ever sent.
    const socketPath = path.join(workDir, 'silent.sock');
    const server = net.createServer();
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));

    const started = performance.now();
    expect(() => receiveFds(socketPath, 300)).toThrow(`receiveFds: recvmsg ${socketPath}: ETIMEDOUT (timed out after 300 ms)`);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2000);
  });

  it('rejects a peer that sends no fds', async () => {
    const socketPath = path.join(workDir, 'no-fds.sock');
    const peer = startProcess([
      process.execPath,
      '-e',
      `require('net').createServer((c) => c.end('{"error":"no listeners"}')).listen(${JSON.stringify(socketPath)}, () => console.log('{"event":"ready"}'))`,
    ]);
    await peer.next('ready');

    let caught: (Error & { code?: string; payload?: Buffer }) | undefined;
    try {
      receiveFds(socketPath, 5000);
    } catch (error) {
      caught = error as typeof caught;
    }
    expect(caught?.message).toBe(`receiveFds: ${socketPath}: the peer closed the connection without sending file descriptors (24 payload bytes)`);
    expect(caught?.code).toBe('ERR_NO_FDS');
    expect(caught?.payload?.toString()).toBe('{"error":"no listeners"}');
  });

  it('detects MSG_CTRUNC and closes what arrived', async () => {
    const fd = createListener('127.0.0.1', 0);
    ownedFds.push(fd);
    const socketPath = await serveFds('truncated', Array<number>(50).fill(fd), '{}');
    // Node.js starts with about 20 descriptors open (20 with Node.js 20.20), so the kernel can install only some of the 50.
    const receiver = startProcess(['prlimit', '--nofile=40', process.execPath, receiverScript, wrapperUrl, socketPath, 'report-error']);
    const result = await receiver.next('error');
    expect(result.code).toBe('EPROTO');
    expect(result.message).toContain(`receiveFds: recvmsg(MSG_CTRUNC) ${socketPath}: EPROTO`);
    expect(result.after).toBe(result.before);
  });

  it('rejects a payload over 1 MiB', async () => {
    const fd = createListener('127.0.0.1', 0);
    ownedFds.push(fd);
    // 2 MiB does not fit in the socket buffers after the receiver stops at 1 MiB, so the sender fails too.
    const socketPath = await serveFds('too-large', [fd], 'x'.repeat(2 * 1024 * 1024));
    const receiver = startProcess([process.execPath, receiverScript, wrapperUrl, socketPath, 'report-error']);
    const result = await receiver.next('error');
    expect(result.code).toBe('EMSGSIZE');
    expect(result.message).toBe(`receiveFds: recvmsg ${socketPath}: EMSGSIZE (payload over 1 MiB)`);
    expect(result.after).toBe(result.before);
    await vi.waitFor(() => expect(sendErrors.map((error) => (error as NodeJS.ErrnoException).code)).toEqual([expect.stringMatching(/^(EPIPE|ECONNRESET)$/)]));
  });

  it('rejects a socket path over 107 bytes', () => {
    const long = `/tmp/${'x'.repeat(120)}.sock`;
    expect(() => receiveFds(long, 1000)).toThrow(`receiveFds: connect ${long}: ENAMETOOLONG`);
  });

  it('rejects an invalid timeout', () => {
    expect(() => receiveFds('/tmp/x.sock', 0)).toThrow('receiveFds: invalid timeout 0 ms');
  });
});

describe('sendFds', () => {
  it('sends a payload larger than the socket buffer', async () => {
    const fd = createListener('127.0.0.1', 0);
    ownedFds.push(fd);
    // 600 KiB is larger than the Unix socket's send buffer, so sendmsg sends it in parts.
    const payload = Buffer.alloc(600 * 1024, 'abcdefgh');
    const socketPath = await serveFds('large', [fd, fd], payload.toString());
    const receiver = startProcess([process.execPath, receiverScript, wrapperUrl, socketPath, 'payload']);
    const result = await receiver.next('payload');
    expect(result.fds).toBe(2);
    expect(result.bytes).toBe(payload.length);
    expect(result.sha256).toBe(createHash('sha256').update(payload).digest('hex'));
    expect(sendErrors).toEqual([]);
  });
});

describe('sendFds errors', () => {
  it('rejects an empty payload and fd list', () => {
    expect(() => sendFds(0, [1], '')).toThrow('sendFds: invalid payload');
    expect(() => sendFds(0, [], 'x')).toThrow('sendFds: invalid fds []');
  });

  it('names the socket in sendmsg errors', () => {
    const fd = createListener('127.0.0.1', 0);
    ownedFds.push(fd);
    // A listening TCP socket has no peer, so sendmsg fails with EPIPE.
    expect(() => sendFds(fd, [fd], 'x')).toThrow(`sendFds: sendmsg fd ${fd}: EPIPE`);
  });
});

describe('addonPathOf', () => {
  it('finds the addon next to a bundle chunk', () => {
    expect(addonPathOf('/tandem/app/chunk-ABC.js')).toBe('/tandem/app/fd-passing.node');
  });

  it('finds the addon in dist for a source file', () => {
    expect(addonPathOf('/repo/supervisor/handoff/fd-passing.ts')).toBe('/repo/dist/supervisor/handoff/fd-passing.node');
  });
});

describe('the built addon', () => {
  it('is in the runtime and its manifest', () => {
    const manifest = JSON.parse(readFileSync(path.join(runtimeRoot, RUNTIME_PATHS.manifest), 'utf8')) as { files: Array<{ path: string; mode: number }> };
    expect(existsSync(path.join(runtimeRoot, RUNTIME_PATHS.fdPassing))).toBe(true);
    expect(manifest.files.find((file) => file.path === RUNTIME_PATHS.fdPassing)?.mode).toBe(0o644);
  });

  it('loads in the runtime Node.js 24 from app/', async () => {
    const script =
      `const m = require(${JSON.stringify(path.join(runtimeRoot, RUNTIME_PATHS.fdPassing))}); ` +
      "const fd = m.createListener('127.0.0.1', 0, 8); " +
      'console.log(JSON.stringify({ node: process.version, address: m.socketAddress(fd), listening: m.isListeningSocket(fd) }));';
    const result = await execa(RUNTIME_NODE[0] as string, [...RUNTIME_NODE.slice(1), '-e', script], { reject: false });
    expect(result.stderr).toBe('');
    const output = JSON.parse(result.stdout) as { node: string; address: { family: string }; listening: boolean };
    expect(output.node).toMatch(/^v24\./);
    expect(output.address.family).toBe('IPv4');
    expect(output.listening).toBe(true);
  });
});
