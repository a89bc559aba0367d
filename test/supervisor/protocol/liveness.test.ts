import { existsSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../supervisor/log.js';
import { DEAD_SUPERVISOR_REASON, LivenessListener, livenessSocketFile, MAX_SOCKET_PATH_BYTES, SocketPathTooLongError } from '../../../supervisor/protocol/liveness.js';
import { RecordWriter, type ContainerRecord } from '../../../supervisor/protocol/record.js';
import { RecordStore } from '../../../supervisor/protocol/store.js';
import { delay, isAlive, logEvents, makeSharedDir, superviseArgs, tandem, waitForOutput, writePod } from '../../support/tandem.js';

const log = createLogger('silent');

const pod = [
  { name: 'proxy', role: 'sidecar' as const, priority: 1, readiness: 'started' },
  { name: 'worker', role: 'app' as const, priority: 0 },
];

function readRecordOf(shared: string, name: string): ContainerRecord | undefined {
  try {
    return JSON.parse(readFileSync(path.join(shared, 'state', `${name}.json`), 'utf8')) as ContainerRecord;
  } catch {
    return undefined;
  }
}

/** Polls a container's record file until `check` accepts it, failing after `timeoutMs`. */
async function waitForRecord(shared: string, name: string, check: (record: ContainerRecord) => boolean, timeoutMs = 10_000): Promise<ContainerRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = readRecordOf(shared, name);
    if (record !== undefined && check(record)) {
      return record;
    }
    if (Date.now() > deadline) {
      throw new Error(`record of ${name} did not reach the expected state within ${timeoutMs} ms; last: ${JSON.stringify(record)}`);
    }
    await delay(20);
  }
}

/** Connects once to a Unix socket and returns 'connected' or the error code. */
function connectOutcome(file: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ path: file });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Leaves a socket file at `file` whose listener was killed, as a supervisor killed by SIGKILL does. */
async function makeStaleSocket(file: string): Promise<void> {
  const script = "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))";
  await execa('node', ['-e', script, file], { reject: false });
}

/**
 * Starts a process that listens on `file` until it is killed, standing in for a peer's supervisor.
 * Wait for 'listening' on its stdout before using the socket.
 */
function startListenerProcess(file: string) {
  const script = "require('net').createServer().listen(process.argv[1], () => console.log('listening'))";
  return execa('node', ['-e', script, file], { reject: false });
}

/**
 * Waits for a process to exit, failing after `timeoutMs`. A hang then fails the test before vitest's
 * own timeout, so the test's cleanup still runs and kills the processes it started.
 */
async function exitWithin<T>(child: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`process did not exit within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([child, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Ends a command that a killed supervisor left behind. */
function killOrphan(pid: number | undefined): void {
  if (pid !== undefined && isAlive(pid)) {
    process.kill(pid, 'SIGKILL');
  }
}

function record(name: string, generation = 0): ContainerRecord {
  return { version: 1, name, role: 'app', priority: 0, generation, phase: 'waiting', supervisorPid: process.pid, times: {} };
}

describe('liveness of peer supervisors', () => {
  it('sidecar stops when app supervisor is killed', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'Never');
    const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));
    const app = tandem(superviseArgs(shared, 'worker', 'app', ['sleep', '1000']));
    const appRecord = await waitForRecord(shared, 'worker', (record) => record.phase === 'running');
    await waitForRecord(shared, 'proxy', (record) => record.phase === 'ready');

    try {
      const killedAt = performance.now();
      app.kill('SIGKILL');
      const result = await exitWithin(sidecar, 10_000);
      const latencyMs = performance.now() - killedAt;
      console.log(`app supervisor SIGKILL -> sidecar exit: ${latencyMs.toFixed(0)} ms`);

      expect(result.exitCode).toBe(0);
      expect(latencyMs).toBeLessThan(2000);
      const deaths = logEvents(result.stderr).filter((event) => event.event === 'peer-died');
      expect(deaths).toHaveLength(1);
      expect(deaths[0]?.peer).toBe('worker');
      expect(deaths[0]?.generation).toBe(0);
      expect(deaths[0]?.exitCode).toBe(137);
    } finally {
      killOrphan(appRecord.pid);
      sidecar.kill('SIGKILL');
    }
  });

  it('waiting app fails when sidecar supervisor is killed', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'Never');
    const app = tandem(superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'touch "$0/app-ran"', shared]));
    const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000'], ['--readiness', 'file:/nonexistent']));
    const sidecarRecord = await waitForRecord(shared, 'proxy', (record) => record.phase === 'running');
    await waitForRecord(shared, 'worker', (record) => record.phase === 'waiting');

    try {
      const killedAt = performance.now();
      sidecar.kill('SIGKILL');
      const result = await exitWithin(app, 10_000);
      const latencyMs = performance.now() - killedAt;
      console.log(`sidecar supervisor SIGKILL -> waiting app exit: ${latencyMs.toFixed(0)} ms`);

      expect(result.exitCode).toBe(124);
      expect(latencyMs).toBeLessThan(2000);
      const failure = logEvents(result.stderr).find((event) => event.event === 'failed');
      expect(failure?.msg).toContain('sidecar proxy exited with code 137');
      expect(existsSync(path.join(shared, 'app-ran'))).toBe(false);
    } finally {
      killOrphan(sidecarRecord.pid);
      app.kill('SIGKILL');
    }
  });

  it('restarted container is not declared dead', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'OnFailure');
    const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));
    const first = tandem(superviseArgs(shared, 'worker', 'app', ['sleep', '1000']));
    const firstRecord = await waitForRecord(shared, 'worker', (record) => record.phase === 'running');
    await waitForRecord(shared, 'proxy', (record) => record.phase === 'ready');

    try {
      // The restart follows the kill at once, so the sidecar may see the old death and the new record in either order.
      first.kill('SIGKILL');
      const second = await exitWithin(tandem(superviseArgs(shared, 'worker', 'app', ['sleep', '1.5'])), 10_000);
      expect(second.exitCode).toBe(0);
      expect(readRecordOf(shared, 'worker')?.generation).toBe(1);

      const result = await exitWithin(sidecar, 10_000);
      expect(result.exitCode).toBe(0);
      const deaths = logEvents(result.stderr).filter((event) => event.event === 'peer-died');
      expect(deaths.filter((event) => event.generation !== 0)).toEqual([]);
      expect(deaths.length).toBeLessThanOrEqual(1);
    } finally {
      killOrphan(firstRecord.pid);
      sidecar.kill('SIGKILL');
    }
  });

  it('stale socket does not block a new supervisor', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'worker', role: 'app', priority: 0 }], 'Never');
    const socketFile = livenessSocketFile(shared, 'worker');
    const first = tandem(superviseArgs(shared, 'worker', 'app', ['sleep', '1000']));
    const firstRecord = await waitForRecord(shared, 'worker', (record) => record.phase === 'running');
    first.kill('SIGKILL');
    await first;
    killOrphan(firstRecord.pid);
    expect(existsSync(socketFile)).toBe(true);
    expect(await connectOutcome(socketFile)).toBe('ECONNREFUSED');

    const second = tandem(superviseArgs(shared, 'worker', 'app', ['sleep', '1000']));
    try {
      await waitForRecord(shared, 'worker', (record) => record.generation === 1 && record.phase === 'running');
      expect(await connectOutcome(socketFile)).toBe('connected');
    } finally {
      second.kill('SIGTERM');
    }
    const result = await second;
    expect(result.exitCode).toBe(143);
    expect(logEvents(result.stderr).filter((event) => event.event === 'failed')).toEqual([]);
  });

  it('too long socket path is rejected', async () => {
    const shared = makeSharedDir();
    const deepShared = path.join(shared, 'x'.repeat(100));
    mkdirSync(path.join(deepShared, 'state'), { recursive: true });
    mkdirSync(path.join(deepShared, 'logs'));
    await writePod(deepShared, pod, 'Never');
    const socketFile = livenessSocketFile(deepShared, 'worker');
    expect(Buffer.byteLength(socketFile)).toBeGreaterThan(MAX_SOCKET_PATH_BYTES);

    await expect(LivenessListener.listen(socketFile, log)).rejects.toThrow(SocketPathTooLongError);
    const result = await tandem(superviseArgs(deepShared, 'worker', 'app', ['true']));
    expect(result.exitCode).toBe(2);
    const failure = logEvents(result.stderr).find((event) => event.event === 'failed');
    expect(failure?.msg).toContain(socketFile);
    expect(failure?.msg).toContain('--shared-dir');
    expect(readRecordOf(deepShared, 'worker')).toBeUndefined();
  });

  it('listener socket is writable by all users', async () => {
    const shared = makeSharedDir();
    const listener = await LivenessListener.listen(livenessSocketFile(shared, 'worker'), log);
    try {
      expect(statSync(listener.file).isSocket()).toBe(true);
      expect(statSync(listener.file).mode & 0o777).toBe(0o666);
    } finally {
      await listener.close();
    }
    expect(existsSync(listener.file)).toBe(false);
  });

  it('live socket is not taken over', async () => {
    const shared = makeSharedDir();
    const file = livenessSocketFile(shared, 'worker');
    const listener = await LivenessListener.listen(file, log);
    try {
      await expect(LivenessListener.listen(file, log)).rejects.toThrow(`Another process is listening on ${file}`);
      expect(await connectOutcome(file)).toBe('connected');
    } finally {
      await listener.close();
    }
  });
});

describe('record store liveness', () => {
  it('peer without a socket stays live', async () => {
    const shared = makeSharedDir();
    await new RecordWriter(shared, record('old')).update('running');
    const store = await RecordStore.open(shared, log);
    let listener: LivenessListener | undefined;
    try {
      await delay(1000);
      expect(store.records.get('old')?.phase).toBe('running');

      // The store retries while the socket is missing, so a listener that appears later is watched too.
      listener = await LivenessListener.listen(livenessSocketFile(shared, 'old'), log);
      await delay(600);
      await listener.close();
      const dead = await store.until((records) => (records.get('old')?.phase === 'exited' ? records.get('old') : undefined), AbortSignal.timeout(2000));
      expect(dead.exitCode).toBe(137);
      expect(dead.reason).toBe(DEAD_SUPERVISOR_REASON);
      expect(dead.generation).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('exited record before close wins', async () => {
    const shared = makeSharedDir();
    const listener = await LivenessListener.listen(livenessSocketFile(shared, 'done'), log);
    const writer = new RecordWriter(shared, record('done'));
    await writer.update('running');
    const store = await RecordStore.open(shared, log);
    try {
      await writer.update('exited', { exitCode: 5 });
      await listener.close();
      await delay(500);
      expect(store.records.get('done')?.phase).toBe('exited');
      expect(store.records.get('done')?.exitCode).toBe(5);
      expect(store.records.get('done')?.reason).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('dead peer is exited at open', async () => {
    const shared = makeSharedDir();
    // A sidecar restarted in place keeps the fields of its previous exit in its live record.
    await new RecordWriter(shared, record('gone', 3)).update('running', { exitCode: 1, rawExitCode: 1, signal: 'SIGSEGV' });
    await makeStaleSocket(livenessSocketFile(shared, 'gone'));

    const store = await RecordStore.open(shared, log);
    try {
      expect(store.records.get('gone')?.phase).toBe('exited');
      expect(store.records.get('gone')?.exitCode).toBe(137);
      expect(store.records.get('gone')?.generation).toBe(3);
      expect(store.records.get('gone')?.rawExitCode).toBeUndefined();
      expect(store.records.get('gone')?.signal).toBeUndefined();

      // Reading the unchanged file again, as after an inotify event, must not revive the record.
      const phases: string[] = [];
      store.on('change', () => phases.push(store.records.get('gone')!.phase));
      const file = path.join(shared, 'state', 'gone.json');
      writeFileSync(file, readFileSync(file));
      await delay(500);
      expect(phases.length).toBeGreaterThan(0);
      expect(phases.filter((phase) => phase !== 'exited')).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('own container is never a peer', async () => {
    const shared = makeSharedDir();
    await new RecordWriter(shared, record('self')).update('running');
    await makeStaleSocket(livenessSocketFile(shared, 'self'));

    const store = await RecordStore.open(shared, log, { self: 'self' });
    try {
      await delay(500);
      expect(store.records.get('self')?.phase).toBe('running');
    } finally {
      await store.close();
    }
  });

  it('new generation replaces a dead one', async () => {
    const shared = makeSharedDir();
    const writer = new RecordWriter(shared, record('restarted'));
    await writer.update('running');
    await makeStaleSocket(livenessSocketFile(shared, 'restarted'));
    const store = await RecordStore.open(shared, log);
    let listener: LivenessListener | undefined;
    try {
      expect(store.records.get('restarted')?.phase).toBe('exited');

      listener = await LivenessListener.listen(livenessSocketFile(shared, 'restarted'), log);
      await new RecordWriter(shared, record('restarted', 1)).update('running');
      const live = await store.until((records) => (records.get('restarted')?.generation === 1 ? records.get('restarted') : undefined), AbortSignal.timeout(2000));
      expect(live.phase).toBe('running');

      // The new generation's listener is alive, so the record stays live.
      await delay(500);
      expect(store.records.get('restarted')?.phase).toBe('running');
      expect(store.records.get('restarted')?.generation).toBe(1);
    } finally {
      await listener?.close();
      await store.close();
    }
  });

  it('old listener dying after restart is ignored', async () => {
    const shared = makeSharedDir();
    const file = livenessSocketFile(shared, 'restarted');
    const old = startListenerProcess(file);
    await waitForOutput(old, 'listening');
    await new RecordWriter(shared, record('restarted')).update('running');
    const store = await RecordStore.open(shared, log);
    let listener: LivenessListener | undefined;
    try {
      // A restarted container's supervisor replaces the socket file and then writes generation 1,
      // while the store still keeps its connection to the old listener.
      unlinkSync(file);
      listener = await LivenessListener.listen(file, log);
      await new RecordWriter(shared, record('restarted', 1)).update('running');
      await store.until((records) => (records.get('restarted')?.generation === 1 ? true : undefined), AbortSignal.timeout(2000));

      old.kill('SIGKILL');
      await old;
      await delay(500);
      expect(store.records.get('restarted')?.phase).toBe('running');
      expect(store.records.get('restarted')?.generation).toBe(1);
    } finally {
      old.kill('SIGKILL');
      await listener?.close();
      await store.close();
    }
  });
});
