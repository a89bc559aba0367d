import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import type { ContainerRecord } from '../../supervisor/protocol/record.js';
import { delay, logEvents, makeSharedDir, repoRoot, runtimeTandem, superviseArgs, tandem, writePod } from '../support/tandem.js';

// Two slots of a hot-upgrade sidecar run as two supervisors of the assembled runtime (Node.js 24,
// the descriptor-passing addon and the launcher that sets LISTEN_PID) on one shared directory, as
// OpenKruise runs them as two containers of a pod.

const SERVER = path.join(repoRoot, 'test', 'support', 'activated-server.mjs');
const AUTOCANNON = path.join(repoRoot, 'node_modules', 'autocannon', 'autocannon.js');

type Supervisor = ReturnType<typeof runtimeTandem>;
const running = new Set<Supervisor>();

afterEach(async () => {
  for (const supervisor of running) {
    supervisor.kill('SIGKILL');
  }
  running.clear();
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function record(shared: string, name: string): ContainerRecord | undefined {
  try {
    return JSON.parse(readFileSync(path.join(shared, 'state', `${name}.json`), 'utf8')) as ContainerRecord;
  } catch {
    return undefined;
  }
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await delay(25);
  }
}

/** Writes the spec of an Always pod whose only containers are the two slots of `sidecar`. */
async function writeSlotPod(shared: string, sidecar = 'mesh'): Promise<void> {
  await writePod(shared, [
    { name: `${sidecar}-1`, role: 'sidecar', priority: 1 },
    { name: `${sidecar}-2`, role: 'sidecar', priority: 1 },
  ], 'Always');
}

/** Creates a shared volume for a pod of the two slots of `sidecar`. */
async function slotPod(sidecar = 'mesh'): Promise<string> {
  const shared = makeSharedDir();
  await writeSlotPod(shared, sidecar);
  return shared;
}

/** Starts a slot's supervisor, with SIDECARSET_VERSION set as the downward API sets it and the rest as flags. */
function startSlot(shared: string, name: string, version: string, command: readonly string[], extra: readonly string[] = [], env: Record<string, string> = {}): Supervisor {
  const supervisor = runtimeTandem(superviseArgs(shared, name, 'sidecar', command, ['--stop-timeout', '5s', ...extra]), {
    env: { SIDECARSET_VERSION: version, VERSION: `v${version}`, ...env },
  });
  running.add(supervisor);
  return supervisor;
}

/** Sends one GET and returns the response body (`version=vN`), or rejects with the error. */
function get(port: number, pathname = '/', agent: Agent | false = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const outgoing = request({ host: '127.0.0.1', port, path: pathname, agent }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => (response.statusCode === 200 ? resolve(body.trim()) : reject(new Error(`status ${response.statusCode}`))));
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
}

/** Sends slow requests over keep-alive connections until stopped, counting responses per version and failures. */
function slowRequests(port: number, connections: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const versions = new Map<string, number>();
  const failures: string[] = [];
  let stopped = false;
  const loops = Array.from({ length: connections }, async () => {
    while (!stopped) {
      try {
        const answer = await get(port, '/slow?ms=300', agent);
        versions.set(answer, (versions.get(answer) ?? 0) + 1);
      } catch (error) {
        failures.push((error as Error).message);
      }
    }
  });
  return {
    versions,
    failures,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

interface LoadResult {
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  resets: number;
}

/** Runs autocannon for a bounded time against the port, with keep-alive connections. */
async function startLoad(port: number, seconds: number, extra: readonly string[] = []): Promise<() => Promise<LoadResult>> {
  const load = execa('node', [AUTOCANNON, '--json', '--connections', '8', '--duration', String(seconds), ...extra, `http://127.0.0.1:${port}/`], { reject: false });
  return async () => {
    const result = await load;
    const report = JSON.parse(result.stdout) as { requests: { total: number }; errors: number; timeouts: number; non2xx: number; resets?: number };
    return { requests: report.requests.total, errors: report.errors, timeouts: report.timeouts, non2xx: report.non2xx, resets: report.resets ?? 0 };
  };
}

describe('hot upgrade between two slots', () => {
  it('empty slot parks without its command', async () => {
    const shared = await slotPod();
    const marker = path.join(shared, 'ran');
    const slot = startSlot(shared, 'mesh-2', '0', ['sh', '-c', `touch ${marker}; sleep 60`]);
    await waitFor('mesh-2 parked', () => record(shared, 'mesh-2')?.phase === 'parked');
    expect(record(shared, 'mesh-2')).toMatchObject({ phase: 'parked', slotVersion: '0', reason: 'empty slot (version 0)' });
    slot.kill('SIGTERM');
    const result = await slot;
    expect(result.exitCode).toBe(0);
    expect(existsSync(marker)).toBe(false);
    expect(record(shared, 'mesh-2')).toMatchObject({ phase: 'exited', exitCode: 0 });
  });

  it('socket activation v1 → v2 → v1 under load', async () => {
    const shared = await slotPod();
    const port = await freePort();
    const listen = ['--listen', `tcp:127.0.0.1:${port}`, '--drain-timeout', '10s'];
    const server = ['node', SERVER];

    const first = startSlot(shared, 'mesh-1', '1', server, listen);
    const parked = startSlot(shared, 'mesh-2', '0', server, listen);
    await waitFor('mesh-1 ready', () => record(shared, 'mesh-1')?.phase === 'ready');
    await waitFor('mesh-2 parked', () => record(shared, 'mesh-2')?.phase === 'parked');
    expect(await get(port)).toBe('version=v1');

    const finishLoad = await startLoad(port, 12);
    const slow = slowRequests(port, 4);
    await delay(1500);

    // Upgrade: the empty slot's container is replaced by the new version, as Kruise does.
    parked.kill('SIGTERM');
    expect((await parked).exitCode).toBe(0);
    const second = startSlot(shared, 'mesh-2', '2', server, listen);
    await waitFor('mesh-1 drained', () => record(shared, 'mesh-1')?.phase === 'parked');
    await waitFor('mesh-2 hand-off done', () => record(shared, 'mesh-2')?.handoff?.phase === 'done');
    expect(record(shared, 'mesh-2')).toMatchObject({ phase: 'ready', slotVersion: '2', handoff: { from: 'mesh-1', fromVersion: '1', phase: 'done' } });
    expect(record(shared, 'mesh-1')).toMatchObject({ phase: 'parked', drained: { for: 'mesh-2' } });
    await delay(1500);

    // Rollback: the old slot gets the empty image, then the old version again with the next version number.
    first.kill('SIGTERM');
    expect((await first).exitCode).toBe(0);
    const third = startSlot(shared, 'mesh-1', '3', server, listen, { VERSION: 'v1' });
    await waitFor('mesh-2 drained', () => record(shared, 'mesh-2')?.phase === 'parked');
    await waitFor('mesh-1 hand-off done', () => record(shared, 'mesh-1')?.handoff?.phase === 'done');

    const load = await finishLoad();
    await slow.stop();
    const slowCounts = Object.fromEntries(slow.versions);
    console.log(`socket activation v1 → v2 → v1: ${load.requests} requests, ${load.errors} errors, ${load.timeouts} timeouts, ${load.non2xx} non-2xx, ${load.resets} resets; slow requests ${JSON.stringify(slowCounts)}, ${slow.failures.length} failed`);
    expect(load).toMatchObject({ errors: 0, timeouts: 0, non2xx: 0, resets: 0 });
    expect(load.requests).toBeGreaterThan(1000);
    expect(slow.failures).toEqual([]);
    expect(Object.keys(slowCounts).sort()).toEqual(['version=v1', 'version=v2']);
    expect(await get(port)).toBe('version=v1');

    const status = await tandem(['status', '--shared-dir', shared]);
    expect(status.stdout).toMatch(/VERSION\s+HANDOFF/);
    expect(status.stdout).toMatch(/mesh-1 .* 3 +from mesh-2 v2: done \d+ms/);
    expect(status.stdout).toMatch(/mesh-2 .* parked .* 2 +from mesh-1 v1: done \d+ms; drained for mesh-1 in \d+ms/);

    second.kill('SIGTERM');
    third.kill('SIGTERM');
    expect((await second).exitCode).toBe(0);
    expect((await third).exitCode).toBe(0);
  }, 60_000);

  it('HAProxy reuseport v1 → v2 → v1 under load', async () => {
    const shared = await slotPod('proxy');
    const [port, backendPort] = [await freePort(), await freePort()];
    const backend = execa({ reject: false })('node', ['-e', `require('node:http').createServer((q, s) => s.end('ok')).listen(${backendPort}, '127.0.0.1', () => console.log('up'))`]);
    await new Promise<void>((resolve) => backend.stdout!.once('data', () => resolve()));
    const config = path.join(shared, 'haproxy.cfg');
    writeFileSync(
      config,
      [
        'global',
        '  maxconn 2000',
        'defaults',
        '  mode http',
        '  timeout connect 2s',
        '  timeout client 30s',
        '  timeout server 30s',
        'frontend web',
        `  bind 127.0.0.1:${port}`,
        '  http-response set-header X-Version "%[env(VERSION)]"',
        '  default_backend app',
        'backend app',
        `  server app 127.0.0.1:${backendPort}`,
        '',
      ].join('\n'),
    );
    // SIGUSR1 is HAProxy's soft stop: it closes its listeners and finishes the connections it has.
    const flags = ['--listen', `reuseport:${port}`, '--stop-signal', 'SIGUSR1', '--drain-timeout', '10s'];
    const haproxy = ['/usr/sbin/haproxy', '-db', '-f', config];
    try {
      const first = startSlot(shared, 'proxy-1', '1', haproxy, flags);
      const parked = startSlot(shared, 'proxy-2', '0', haproxy, flags);
      await waitFor('proxy-1 ready', () => record(shared, 'proxy-1')?.phase === 'ready');
      await waitFor('proxy-2 parked', () => record(shared, 'proxy-2')?.phase === 'parked');
      expect(await get(port)).toBe('ok');

      const finishLoad = await startLoad(port, 10);
      await delay(1500);
      parked.kill('SIGTERM');
      await parked;
      const second = startSlot(shared, 'proxy-2', '2', haproxy, flags, { VERSION: 'v2' });
      await waitFor('proxy-1 drained', () => record(shared, 'proxy-1')?.phase === 'parked');
      await waitFor('proxy-2 hand-off done', () => record(shared, 'proxy-2')?.handoff?.phase === 'done');
      await delay(1500);

      first.kill('SIGTERM');
      await first;
      const third = startSlot(shared, 'proxy-1', '3', haproxy, flags);
      await waitFor('proxy-2 drained', () => record(shared, 'proxy-2')?.phase === 'parked');
      await waitFor('proxy-1 hand-off done', () => record(shared, 'proxy-1')?.handoff?.phase === 'done');

      const load = await finishLoad();
      console.log(`HAProxy with SO_REUSEPORT v1 → v2 → v1: ${load.requests} requests, ${load.errors} errors, ${load.timeouts} timeouts, ${load.non2xx} non-2xx, ${load.resets} resets`);
      expect(load).toMatchObject({ errors: 0, timeouts: 0, non2xx: 0, resets: 0 });
      expect(load.requests).toBeGreaterThan(1000);
      expect(record(shared, 'proxy-2')).toMatchObject({ phase: 'parked', drained: { for: 'proxy-1', exitCode: 0 } });

      second.kill('SIGTERM');
      third.kill('SIGTERM');
      expect((await second).exitCode).toBe(0);
      expect((await third).exitCode).toBe(0);
    } finally {
      backend.kill();
    }
  }, 60_000);

  /** Starts a pod with two slots of `mesh`, v1 serving in mesh-1 on a socket that tandem owns. */
  async function servingPod(extra: readonly string[] = []) {
    const shared = await slotPod();
    const port = await freePort();
    const flags = ['--listen', `tcp:127.0.0.1:${port}`, '--drain-timeout', '5s', ...extra];
    const first = startSlot(shared, 'mesh-1', '1', ['node', SERVER], flags);
    await waitFor('mesh-1 ready', () => record(shared, 'mesh-1')?.phase === 'ready');
    return { shared, port, flags, first };
  }

  it('new version exiting early parks', async () => {
    const { shared, port, flags } = await servingPod();
    const attempts = path.join(shared, 'attempts');
    const failed = startSlot(shared, 'mesh-2', '2', ['sh', '-c', `echo attempt >> ${attempts}; exit 3`], flags);
    await waitFor('mesh-2 parked', () => record(shared, 'mesh-2')?.phase === 'parked', 20_000);

    expect(readFileSync(attempts, 'utf8').trim().split('\n')).toHaveLength(3);
    expect(record(shared, 'mesh-2')?.handoff).toMatchObject({
      phase: 'failed',
      from: 'mesh-1',
      reason: 'the new version exited with code 3 before it was ready (attempt 3 of 3)',
    });
    expect(record(shared, 'mesh-2')?.reason).toBe('the upgrade to version 2 failed: the new version exited with code 3 before it was ready (attempt 3 of 3)');
    expect(record(shared, 'mesh-1')?.phase).toBe('ready');
    expect(await get(port)).toBe('version=v1');
    failed.kill('SIGTERM');
    expect((await failed).exitCode).toBe(0);
  }, 30_000);

  it('new version never ready parks', async () => {
    const { shared, port, flags } = await servingPod();
    const failed = startSlot(shared, 'mesh-2', '2', ['node', SERVER], [...flags, '--readiness', `file:${path.join(shared, 'never')}`, '--startup-timeout', '1s']);
    await waitFor('mesh-2 parked', () => record(shared, 'mesh-2')?.phase === 'parked', 20_000);

    expect(record(shared, 'mesh-2')?.handoff).toMatchObject({ phase: 'failed', reason: 'the new version was not ready within 1s (attempt 3 of 3)' });
    expect(record(shared, 'mesh-1')?.phase).toBe('ready');
    expect(await get(port)).toBe('version=v1');
    failed.kill('SIGTERM');
    const result = await failed;
    expect(result.exitCode).toBe(0);
    expect(logEvents(result.stderr).filter((event) => event.event === 'handoff-retry')).toHaveLength(2);
    expect(logEvents(result.stderr).some((event) => event.event === 'handoff-failed')).toBe(true);
  }, 30_000);

  it('slow requests finish before drain', async () => {
    const { shared, port, flags } = await servingPod();
    const finishLoad = await startLoad(port, 8, ['--overallRate', '200']);
    const slow = Array.from({ length: 20 }, () => get(port, '/slow?ms=5000'));
    await delay(500);
    const second = startSlot(shared, 'mesh-2', '2', ['node', SERVER], flags);
    await waitFor('mesh-2 ready', () => record(shared, 'mesh-2')?.phase === 'ready');
    // The new version accepts before the old one is asked to stop accepting.
    expect(Date.parse(record(shared, 'mesh-2')!.handoff!.readyAt!)).toBeLessThanOrEqual(Date.parse(record(shared, 'mesh-1')!.times.stopping ?? new Date().toISOString()));

    expect(await Promise.all(slow)).toEqual(Array.from({ length: 20 }, () => 'version=v1'));
    await waitFor('mesh-1 drained', () => record(shared, 'mesh-1')?.phase === 'parked');
    // The old version exited only after its slow requests had their responses, about 4.5 s after the drain began.
    expect(record(shared, 'mesh-1')!.drained!.drainMs).toBeGreaterThan(3000);
    expect(record(shared, 'mesh-1')!.drained!.exitCode).toBe(0);
    const load = await finishLoad();
    console.log(`20 slow requests across a hand-off: ${load.requests} other requests at 200/s, ${load.errors} errors, ${load.non2xx} non-2xx, ${load.resets} resets`);
    expect(load).toMatchObject({ errors: 0, timeouts: 0, non2xx: 0, resets: 0 });
    expect(record(shared, 'mesh-2')).toMatchObject({ phase: 'ready', handoff: { phase: 'done' } });
    second.kill('SIGTERM');
    await second;
  }, 30_000);

  /** Kills a slot's whole container at once: tini, the supervisor and its command. */
  async function killContainer(shared: string, name: string, supervisor: Supervisor): Promise<void> {
    const { pid, supervisorPid } = record(shared, name)!;
    for (const target of [supervisor.pid!, supervisorPid, pid]) {
      if (target !== undefined) {
        process.kill(target, 'SIGKILL');
      }
    }
    await supervisor;
  }

  it('old slot dying mid-hand-off', async () => {
    const { shared, port, flags, first } = await servingPod();
    const readyFile = path.join(shared, 'v2-ready');
    const second = startSlot(shared, 'mesh-2', '2', ['node', SERVER], [...flags, '--readiness', `file:${readyFile}`]);
    await waitFor('mesh-2 starting', () => record(shared, 'mesh-2')?.handoff?.phase === 'starting' && record(shared, 'mesh-2')?.phase === 'running');
    await killContainer(shared, 'mesh-1', first);
    writeFileSync(readyFile, '');
    await waitFor('mesh-2 hand-off done', () => record(shared, 'mesh-2')?.handoff?.phase === 'done');
    expect(record(shared, 'mesh-2')).toMatchObject({ phase: 'ready', handoff: { from: 'mesh-1', phase: 'done' } });
    expect(await get(port)).toBe('version=v2');

    // mesh-2's container dies too; mesh-1 comes back as version 3 and opens the socket itself.
    await killContainer(shared, 'mesh-2', second);
    const generation = record(shared, 'mesh-1')!.generation;
    const third = startSlot(shared, 'mesh-1', '3', ['node', SERVER], flags, { VERSION: 'v3' });
    await waitFor('mesh-1 ready again', () => record(shared, 'mesh-1')?.generation === generation + 1 && record(shared, 'mesh-1')?.phase === 'ready');
    expect(record(shared, 'mesh-1')?.handoff).toBeUndefined();
    expect(await get(port)).toBe('version=v3');
    third.kill('SIGTERM');
    expect((await third).exitCode).toBe(0);
  }, 30_000);

  it('restarted old slot parks', async () => {
    const { shared, port, flags, first } = await servingPod();
    const second = startSlot(shared, 'mesh-2', '2', ['node', SERVER], flags);
    await waitFor('mesh-1 drained', () => record(shared, 'mesh-1')?.phase === 'parked');

    // mesh-1's container restarts before Kruise resets it to the empty image, so it still has version 1.
    first.kill('SIGTERM');
    await first;
    const generation = record(shared, 'mesh-1')!.generation;
    const stale = startSlot(shared, 'mesh-1', '1', ['node', SERVER], flags);
    await waitFor('mesh-1 parked again', () => record(shared, 'mesh-1')?.generation === generation + 1 && record(shared, 'mesh-1')?.phase === 'parked');
    expect(record(shared, 'mesh-1')?.reason).toBe('mesh-2 serves version 2, which version 1 does not replace');
    expect(record(shared, 'mesh-2')?.phase).toBe('ready');
    expect(await get(port)).toBe('version=v2');
    second.kill('SIGTERM');
    stale.kill('SIGTERM');
    expect((await second).exitCode).toBe(0);
    expect((await stale).exitCode).toBe(0);
  }, 30_000);

  it('second upgrade waits its turn', async () => {
    const { shared, port, flags, first } = await servingPod();
    const readyFile = path.join(shared, 'v2-ready');
    const second = startSlot(shared, 'mesh-2', '2', ['node', SERVER], [...flags, '--readiness', `file:${readyFile}`]);
    await waitFor('mesh-2 starting', () => record(shared, 'mesh-2')?.handoff?.phase === 'starting' && record(shared, 'mesh-2')?.phase === 'running');

    // mesh-1's container is restarted with version 3 while mesh-2 is still taking over.
    first.kill('SIGTERM');
    await first;
    const third = startSlot(shared, 'mesh-1', '3', ['node', SERVER], flags, { VERSION: 'v3' });
    await waitFor('mesh-1 waiting its turn', () => record(shared, 'mesh-1')?.handoff?.phase === 'waiting-turn');
    await delay(300);
    expect(record(shared, 'mesh-1')?.phase).toBe('waiting');

    writeFileSync(readyFile, '');
    await waitFor('mesh-1 hand-off done', () => record(shared, 'mesh-1')?.handoff?.phase === 'done');
    expect(record(shared, 'mesh-2')).toMatchObject({ phase: 'parked', drained: { for: 'mesh-1' }, handoff: { phase: 'done' } });
    expect(record(shared, 'mesh-1')).toMatchObject({ phase: 'ready', slotVersion: '3', handoff: { from: 'mesh-2', fromVersion: '2', phase: 'done' } });
    expect(await get(port)).toBe('version=v3');
    second.kill('SIGTERM');
    third.kill('SIGTERM');
    await Promise.all([second, third]);
  }, 30_000);

  it('hand-off and drain commands in order', async () => {
    const journal = path.join(makeSharedDir(), 'journal');
    const { shared, port, flags } = await servingPod(['--drain-command', JSON.stringify(['sh', '-c', `echo drain $VERSION >> ${journal}`])]);
    const handoff = ['--handoff-command', JSON.stringify(['sh', '-c', `echo handoff $TANDEM_HANDOFF_FROM $TANDEM_HANDOFF_FROM_VERSION $TANDEM_HANDOFF_DIR >> ${journal}`])];
    const second = startSlot(shared, 'mesh-2', '2', ['sh', '-c', `echo start $VERSION >> ${journal}; exec node ${SERVER}`], [...flags, ...handoff]);
    await waitFor('mesh-2 hand-off done', () => record(shared, 'mesh-2')?.handoff?.phase === 'done');
    expect(readFileSync(journal, 'utf8').trim().split('\n')).toEqual([`handoff mesh-1 1 ${path.join(shared, 'state', 'handoff', 'mesh')}`, 'start v2', 'drain v1']);
    expect(await get(port)).toBe('version=v2');
    second.kill('SIGTERM');
    await second;
  }, 30_000);

  it('invalid slot name or listener', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'mesh', role: 'sidecar', priority: 1 }], 'Always');
    const unnamed = await startSlot(shared, 'mesh', '1', ['true']);
    expect(unnamed.exitCode).toBe(2);
    expect(unnamed.stderr).toContain('the container name \\"mesh\\" does not end in -1 or -2');
    const badListener = await startSlot(shared, 'mesh', '1', ['true'], ['--listen', 'udp:53']);
    expect(badListener.exitCode).toBe(2);
    expect(badListener.stderr).toContain('udp:53');
    expect(badListener.stderr).toContain('tcp:PORT');
  });

  it('slots started together settle', async () => {
    const shared = await slotPod();
    const port = await freePort();
    const flags = ['--listen', `tcp:127.0.0.1:${port}`, '--drain-timeout', '5s'];
    // A pod restarted in the middle of an upgrade: both slots have a version, and 7 is the newer one.
    const older = startSlot(shared, 'mesh-2', '5', ['node', SERVER], flags, { SIDECARSET_VERSION_ALT: '7' });
    const newer = startSlot(shared, 'mesh-1', '7', ['node', SERVER], flags, { SIDECARSET_VERSION_ALT: '5' });
    await waitFor('one slot parked and the other ready', () => {
      const phases = [record(shared, 'mesh-1')?.phase, record(shared, 'mesh-2')?.phase];
      return phases.includes('parked') && phases.includes('ready');
    });
    await waitFor('no hand-off in progress', () => record(shared, 'mesh-1')?.handoff?.phase !== 'draining-peer');

    expect(record(shared, 'mesh-1')).toMatchObject({ phase: 'ready', slotVersion: '7' });
    expect(record(shared, 'mesh-2')).toMatchObject({ phase: 'parked' });
    expect(await get(port)).toBe('version=v7');
    older.kill('SIGTERM');
    newer.kill('SIGTERM');
    expect((await older).exitCode).toBe(0);
    expect((await newer).exitCode).toBe(0);
  }, 30_000);

  it('new version adds and drops listeners', async () => {
    const shared = await slotPod();
    const [kept, dropped, added] = [await freePort(), await freePort(), await freePort()];
    const first = startSlot(shared, 'mesh-1', '1', ['node', SERVER], ['--listen', `tcp:127.0.0.1:${kept},tcp:127.0.0.1:${dropped}`]);
    await waitFor('mesh-1 ready', () => record(shared, 'mesh-1')?.phase === 'ready');
    // The hand-off socket is open to every user, as the new image may run as another one.
    expect(statSync(path.join(shared, 'state', 'mesh-1.fds.sock')).mode & 0o777).toBe(0o666);

    const second = startSlot(shared, 'mesh-2', '2', ['node', SERVER], ['--listen', `tcp:127.0.0.1:${kept},tcp:127.0.0.1:${added}`]);
    await waitFor('mesh-2 hand-off done', () => record(shared, 'mesh-2')?.handoff?.phase === 'done');
    expect(await get(kept)).toBe('version=v2');
    expect(await get(added)).toBe('version=v2');
    await expect(get(dropped)).rejects.toThrow('ECONNREFUSED');
    first.kill('SIGTERM');
    second.kill('SIGTERM');
    await Promise.all([first, second]);
  }, 30_000);

  it('conflicting listeners or long paths exit 2', async () => {
    const duplicate = await runtimeTandem(['supervise', '--listen', 'tcp:127.0.0.1:8080,reuseport:8080', '--', 'true']);
    expect(duplicate.exitCode).toBe(2);
    expect(duplicate.stderr).toContain('tcp:127.0.0.1:8080 and reuseport:8080 both use port 8080');

    const base = makeSharedDir();
    // The liveness socket of mesh-1 fits in 107 bytes, but its hand-off socket `mesh-1.fds.sock` does not.
    const shared = path.join(base, 'x'.repeat(107 - base.length - '/x/state/mesh-1.sock'.length + 1));
    mkdirSync(path.join(shared, 'state'), { recursive: true });
    mkdirSync(path.join(shared, 'logs'));
    await writeSlotPod(shared);
    const long = await startSlot(shared, 'mesh-1', '1', ['true'], ['--listen', 'tcp:127.0.0.1:8080']);
    expect(long.exitCode).toBe(2);
    expect(long.stderr).toContain('longer than the 107 bytes of a Unix socket address');
  });

  it('drain stops when the new slot dies', async () => {
    const { shared, port, flags } = await servingPod(['--drain-command', JSON.stringify(['sleep', '2'])]);
    const second = startSlot(shared, 'mesh-2', '2', ['node', SERVER], flags);
    await waitFor('mesh-2 asking for the drain', () => record(shared, 'mesh-2')?.handoff?.phase === 'draining-peer');
    await killContainer(shared, 'mesh-2', second);
    await waitFor('mesh-1 serving again', () => record(shared, 'mesh-1')?.phase === 'ready', 10_000);
    await delay(2500);
    // The drain is not requested again by the dead slot's record.
    expect(record(shared, 'mesh-1')?.phase).toBe('ready');

    expect(record(shared, 'mesh-1')?.reason).toBe('drain for mesh-2 cancelled: it stopped serving');
    expect(await get(port)).toBe('version=v1');
    // The next take-over is answered again.
    const third = startSlot(shared, 'mesh-2', '3', ['node', SERVER], flags, { VERSION: 'v3' });
    await waitFor('mesh-2 hand-off done', () => record(shared, 'mesh-2')?.slotVersion === '3' && record(shared, 'mesh-2')?.handoff?.phase === 'done', 20_000);
    expect(await get(port)).toBe('version=v3');
    third.kill('SIGTERM');
    await third;
  }, 40_000);

  it('new listener address parks the slot', async () => {
    const { shared, port, flags } = await servingPod();
    const moved = startSlot(shared, 'mesh-2', '2', ['node', SERVER], ['--listen', `tcp:0.0.0.0:${port}`]);
    await waitFor('mesh-2 parked', () => record(shared, 'mesh-2')?.phase === 'parked');
    expect(record(shared, 'mesh-2')?.handoff?.phase).toBe('failed');
    expect(record(shared, 'mesh-2')?.handoff?.reason).toContain(`cannot be opened while the other slot listens on port ${port} as tcp-127.0.0.1-${port}`);
    expect(record(shared, 'mesh-1')?.phase).toBe('ready');
    expect(await get(port)).toBe('version=v1');
    expect(flags).toContain(`tcp:127.0.0.1:${port}`);
    moved.kill('SIGTERM');
    expect((await moved).exitCode).toBe(0);
  }, 30_000);

  it('stop while waiting ends the take-over', async () => {
    const { shared, flags, first } = await servingPod();
    const second = startSlot(shared, 'mesh-2', '2', ['node', SERVER], [...flags, '--readiness', `file:${path.join(shared, 'never')}`]);
    await waitFor('mesh-2 starting', () => record(shared, 'mesh-2')?.handoff?.phase === 'starting' && record(shared, 'mesh-2')?.phase === 'running');
    first.kill('SIGTERM');
    await first;
    const third = startSlot(shared, 'mesh-1', '3', ['node', SERVER], flags);
    await waitFor('mesh-1 waiting its turn', () => record(shared, 'mesh-1')?.handoff?.phase === 'waiting-turn');

    third.kill('SIGTERM');
    expect((await third).exitCode).toBe(143);
    expect(record(shared, 'mesh-1')).toMatchObject({ phase: 'exited', handoff: { phase: 'failed', reason: 'stopped before the take-over' } });
    second.kill('SIGTERM');
    await second;
    expect(record(shared, 'mesh-2')?.handoff).toMatchObject({ phase: 'failed', reason: 'stopped before the new version was ready' });
  }, 30_000);
});
