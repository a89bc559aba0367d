import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PodContainer, RestartPolicy } from '../../supervisor/protocol/pod.js';
import type { ContainerRecord } from '../../supervisor/protocol/record.js';
import { writePodSpec } from '../../supervisor/protocol/pod.js';
import { delay, logEvents, makeSharedDir, superviseArgs, tandem } from '../support/tandem.js';

type Supervisor = ReturnType<typeof tandem>;

interface PodContainerRun extends PodContainer {
  command: string[];
  extra?: string[];
}

/** Starts one supervisor per container on a new shared directory, as the containers of one pod. */
async function startPod(containers: PodContainerRun[], restartPolicy: RestartPolicy, terminationGracePeriodSeconds = 30) {
  const shared = makeSharedDir();
  await writePodSpec(shared, {
    version: 1,
    restartPolicy,
    terminationGracePeriodSeconds,
    containers: containers.map(({ name, role, priority, readiness, exitPriority }) => ({ name, role, priority, readiness, exitPriority })),
  });
  const supervisors = new Map<string, Supervisor>();
  for (const container of containers) {
    supervisors.set(container.name, tandem(superviseArgs(shared, container.name, container.role, container.command, ['--stop-timeout', '5s', ...(container.extra ?? [])])));
  }
  const record = (name: string): ContainerRecord => JSON.parse(readFileSync(path.join(shared, 'state', `${name}.json`), 'utf8')) as ContainerRecord;
  const waitForPhase = async (name: string, phase: string): Promise<void> => {
    for (let attempt = 0; attempt < 200; attempt += 1) {
      try {
        if (record(name).phase === phase) {
          return;
        }
      } catch {
        // The record is not written yet.
      }
      await delay(50);
    }
    throw new Error(`${name} never reached ${phase}`);
  };
  /** Sends SIGTERM to every supervisor at once, as kubelet does when the pod is deleted. */
  const deletePod = (): void => {
    for (const supervisor of supervisors.values()) {
      supervisor.kill('SIGTERM');
    }
  };
  const results = async () => Object.fromEntries(await Promise.all([...supervisors].map(async ([name, supervisor]) => [name, await supervisor] as const)));
  return { shared, supervisors, record, waitForPhase, deletePod, results };
}

const sidecar = (name: string, command: string[], priority = 1, extra: Partial<PodContainerRun> = {}): PodContainerRun => ({ name, role: 'sidecar', priority, command, ...extra });
const app = (name: string, command: string[], extra: Partial<PodContainerRun> = {}): PodContainerRun => ({ name, role: 'app', priority: 0, command, ...extra });

function exitTime(record: ContainerRecord): number {
  return Date.parse(record.times.exited!);
}

describe('pod cases: Job completion', () => {
  it('looping sidecar stops after the app', async () => {
    const pod = await startPod([sidecar('sc', ['sh', '-c', 'while :; do sleep 1; done']), app('app', ['sh', '-c', 'sleep 2; exit 0'])], 'Never');
    const results = await pod.results();

    expect(results.app!.exitCode).toBe(0);
    expect(results.sc!.exitCode).toBe(0);
    expect(exitTime(pod.record('sc')) - exitTime(pod.record('app'))).toBeLessThan(3000);
    expect(Date.parse(pod.record('app').times.running!)).toBeGreaterThanOrEqual(Date.parse(pod.record('sc').times.ready!));
  });

  it('sidecar exiting 2 on TERM is stopped with 0', async () => {
    const pod = await startPod([sidecar('sc', ['sh', '-c', 'trap "exit 2" TERM; while :; do sleep 0.1; done']), app('app', ['sleep', '1'])], 'Never');
    const results = await pod.results();
    expect(results.sc!.exitCode).toBe(0);
    expect(pod.record('sc').rawExitCode).toBe(2);
  });

  it('failed app keeps its code, sidecar 0', async () => {
    const pod = await startPod([sidecar('sc', ['sleep', 'infinity']), app('app', ['sh', '-c', 'sleep 1; exit 3'])], 'Never');
    const results = await pod.results();
    expect(results.app!.exitCode).toBe(3);
    expect(results.sc!.exitCode).toBe(0);
  });

  it('sidecar crash while apps run is restarted', async () => {
    const pod = await startPod([sidecar('sc', ['sh', '-c', 'sleep 1; exit 2']), app('app', ['sleep', '4'])], 'Never');
    const results = await pod.results();

    expect(results.app!.exitCode).toBe(0);
    expect(results.sc!.exitCode).toBe(0);
    const restarts = logEvents(results.sc!.stderr).filter((event) => event.event === 'restarting');
    expect(restarts.length).toBeGreaterThanOrEqual(1);
    expect(restarts[0]!.exitCode).toBe(2);
  });

  it('sidecar exiting 0 early is not restarted', async () => {
    const pod = await startPod([sidecar('sc', ['sh', '-c', 'sleep 1; exit 0']), app('app', ['sleep', '3'])], 'Never');
    const sidecarResult = await pod.supervisors.get('sc')!;
    const appStillRunning = pod.supervisors.get('app')!.exitCode === null;
    const results = await pod.results();

    expect(sidecarResult.exitCode).toBe(0);
    expect(appStillRunning).toBe(true);
    expect(results.app!.exitCode).toBe(0);
    expect(exitTime(pod.record('app')) - exitTime(pod.record('sc'))).toBeGreaterThan(1000);
  });

  it('sidecars stop one by one in reverse order', async () => {
    const pod = await startPod(
      [
        sidecar('sc-proxy', ['sleep', 'infinity'], 2),
        sidecar('sc-log', ['sh', '-c', 'trap "sleep 0.5; exit 0" TERM; while :; do sleep 0.1; done'], 1),
        app('app1', ['sleep', '1']),
        app('app2', ['sleep', '3']),
      ],
      'Never',
    );
    const results = await pod.results();

    expect(Object.values(results).map((result) => result.exitCode)).toEqual([0, 0, 0, 0]);
    const proxyStopping = Date.parse(pod.record('sc-proxy').times.stopping!);
    expect(proxyStopping).toBeGreaterThanOrEqual(exitTime(pod.record('app2')));
    expect(exitTime(pod.record('sc-log'))).toBeLessThanOrEqual(Date.parse(logEvents(results['sc-proxy']!.stderr).find((event) => event.event === 'stopping')!.time));
  });

  it('OnFailure keeps the sidecar for the retry', async () => {
    const shared = makeSharedDir();
    const once = path.join(shared, 'once');
    const script = `if [ ! -f ${once} ]; then touch ${once}; exit 1; fi; exit 0`;
    const pod = await startPod([sidecar('sc', ['sleep', 'infinity']), app('app', ['sh', '-c', script])], 'OnFailure');
    const first = await pod.supervisors.get('app')!;
    expect(first.exitCode).toBe(1);
    await delay(300);
    expect(pod.record('sc').phase).toBe('ready');

    const second = await tandem(superviseArgs(pod.shared, 'app', 'app', ['sh', '-c', script]));
    const sidecarResult = await pod.supervisors.get('sc')!;
    expect(second.exitCode).toBe(0);
    expect(sidecarResult.exitCode).toBe(0);
    expect(pod.record('app').generation).toBe(1);
  });

  it('pre-stop runs before the stop at Job end', async () => {
    const shared = makeSharedDir();
    const flush = path.join(shared, 'flush');
    const pod = await startPod([sidecar('sc', ['sleep', 'infinity'], 1, { extra: ['--pre-stop', JSON.stringify(['sh', '-c', `echo ok > ${flush}`])] }), app('app', ['sleep', '1'])], 'Never');
    const results = await pod.results();
    expect(results.sc!.exitCode).toBe(0);
    expect(readFileSync(flush, 'utf8')).toBe('ok\n');
  });

  it('stop delay lets a log shipper flush', async () => {
    const shared = makeSharedDir();
    const input = path.join(shared, 'app.log');
    const output = path.join(shared, 'out');
    writeFileSync(input, '');
    // The shipper copies new lines every 0.5 s and stops reading at once on TERM.
    const shipper = `trap "exit 0" TERM; while :; do cp ${input} ${output}; sleep 0.5; done`;
    const pod = await startPod(
      [sidecar('sc', ['sh', '-c', shipper], 1, { extra: ['--stop-delay', '1500ms'] }), app('app', ['sh', '-c', `i=1; while [ $i -le 1000 ]; do echo $i >> ${input}; i=$((i+1)); done`])],
      'Never',
    );
    const results = await pod.results();
    expect(results.sc!.exitCode).toBe(0);
    expect(readFileSync(output, 'utf8').trim().split('\n')).toHaveLength(1000);
  });
});

describe('pod cases: start order', () => {
  it('app starts after a slow tcp sidecar', async () => {
    const server = `setTimeout(() => require("net").createServer().listen(PORT, "127.0.0.1"), 2000)`;
    const port = 20000 + Math.floor(Math.random() * 20000);
    const pod = await startPod(
      [
        sidecar('sc', ['node', '-e', server.replace('PORT', String(port))], 1, { readiness: `tcp:${port}` }),
        app('app', ['node', '-e', `require("net").connect(${port}, "127.0.0.1").on("connect", () => process.exit(0)).on("error", () => process.exit(9))`]),
      ],
      'Never',
    );
    const results = await pod.results();
    expect(results.app!.exitCode).toBe(0);
    expect(results.sc!.exitCode).toBe(0);
  });

  it('never-ready sidecar fails the app at the timeout', async () => {
    const pod = await startPod(
      [sidecar('sc', ['sleep', 'infinity'], 1, { readiness: 'file:/nonexistent/ready' }), app('app', ['true'], { extra: ['--startup-timeout', '2s'] })],
      'Never',
    );
    const results = await pod.results();
    expect(results.app!.exitCode).toBe(124);
    expect(results.app!.stderr).toContain('sc not ready after 2s');
    expect(results.sc!.exitCode).toBe(0);
    expect(pod.record('app').times.running).toBeUndefined();
  });

  it('sidecar dying before ready fails the app at once', async () => {
    const pod = await startPod(
      [sidecar('sc', ['sh', '-c', 'sleep 1; exit 137'], 1, { readiness: 'file:/nonexistent/ready' }), app('app', ['true'], { extra: ['--startup-timeout', '60s'] })],
      'Never',
    );
    const results = await pod.results();
    expect(results.app!.exitCode).toBe(124);
    expect(results.app!.stderr).toContain('sc exited with code 137');
    expect(results.sc!.exitCode).toBe(137);
    expect(exitTime(pod.record('app')) - exitTime(pod.record('sc'))).toBeLessThan(3000);
  });

  it('late sidecar stops at once after the app timed out', async () => {
    const shared = makeSharedDir();
    await writePodSpec(shared, { version: 1, restartPolicy: 'Never', terminationGracePeriodSeconds: 30, containers: [{ name: 'sc', role: 'sidecar', priority: 1 }, { name: 'app', role: 'app', priority: 0 }] });
    const app = await tandem(superviseArgs(shared, 'app', 'app', ['true'], ['--startup-timeout', '1s']));
    const late = await tandem(superviseArgs(shared, 'sc', 'sidecar', ['sh', '-c', `touch ${shared}/sc-ran; sleep 1000`]));

    expect(app.exitCode).toBe(124);
    expect(late.exitCode).toBe(0);
    expect(() => readFileSync(path.join(shared, 'sc-ran'))).toThrow();
  });
});

describe('pod cases: deletion', () => {
  it('delete while waiting stops everything fast', async () => {
    const pod = await startPod([sidecar('sc', ['sleep', 'infinity'], 1, { readiness: 'file:/nonexistent/ready' }), app('app', ['touch', '/tmp/never'])], 'Always', 60);
    await pod.waitForPhase('app', 'waiting');
    await delay(500);
    const deletedAt = Date.now();
    pod.deletePod();
    const results = await pod.results();

    expect(results.app!.exitCode).toBe(143);
    expect(pod.record('app').times.running).toBeUndefined();
    expect(exitTime(pod.record('app')) - deletedAt).toBeLessThan(2000);
    expect(exitTime(pod.record('sc')) - deletedAt).toBeLessThan(3000);
  });

  it('never-ready sidecars get TERM on delete', async () => {
    const pod = await startPod(
      [
        sidecar('sc1', ['sleep', 'infinity'], 2, { readiness: 'file:/nonexistent/a' }),
        sidecar('sc2', ['sleep', 'infinity'], 2, { readiness: 'file:/nonexistent/b' }),
        app('app', ['true']),
      ],
      'Always',
      600,
    );
    await pod.waitForPhase('app', 'waiting');
    await delay(300);
    const deletedAt = Date.now();
    pod.deletePod();
    await pod.results();
    expect(exitTime(pod.record('sc1')) - deletedAt).toBeLessThan(5000);
    expect(exitTime(pod.record('sc2')) - deletedAt).toBeLessThan(5000);
  });

  it('sidecar serves until the app has exited', async () => {
    const upstream = createServer((_request, response) => response.end('ok'));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const upstreamPort = (upstream.address() as AddressInfo).port;
    const proxyPort = 20000 + Math.floor(Math.random() * 20000);
    // The proxy forwards to the upstream and, like most proxies, stops serving at once on TERM.
    const proxy = `const http=require("http");http.createServer((q,s)=>http.get("http://127.0.0.1:${upstreamPort}/",(u)=>u.pipe(s)).on("error",()=>{s.statusCode=502;s.end()})).listen(${proxyPort},"127.0.0.1");process.on("SIGTERM",()=>process.exit(0))`;
    // On TERM the app keeps calling through the proxy for 2 s and counts the failures.
    const appScript = `let failed=0,calls=0,stopping=false;const call=()=>new Promise((r)=>require("http").get("http://127.0.0.1:${proxyPort}/",(s)=>{s.resume();if(s.statusCode!==200)failed++;r()}).on("error",()=>{failed++;r()}));process.on("SIGTERM",async()=>{const end=Date.now()+2000;while(Date.now()<end){calls++;await call();}console.log(JSON.stringify({calls,failed}));process.exit(0)});console.log("ready");setInterval(()=>{},1000)`;
    try {
      const pod = await startPod([sidecar('proxy', ['node', '-e', proxy], 1, { readiness: `tcp:${proxyPort}` }), app('app', ['node', '-e', appScript])], 'Always', 30);
      await pod.waitForPhase('app', 'running');
      await delay(500);
      pod.deletePod();
      const results = await pod.results();
      const counts = JSON.parse(results.app!.stdout.trim().split('\n').pop()!);

      expect(counts.calls).toBeGreaterThan(10);
      expect(counts.failed).toBe(0);
      expect(results.proxy!.exitCode).toBe(0);
      expect(Date.parse(pod.record('proxy').times.exited!)).toBeGreaterThanOrEqual(exitTime(pod.record('app')));
    } finally {
      upstream.close();
    }
  });

  it('grace budget bounds a draining sidecar', async () => {
    const pod = await startPod(
      [sidecar('sc', ['sh', '-c', 'trap "" TERM; while :; do sleep 0.1; done'], 1, { extra: ['--stop-timeout', '60s'] }), app('app', ['sleep', 'infinity'])],
      'Always',
      5,
    );
    await pod.waitForPhase('app', 'running');
    const deletedAt = Date.now();
    pod.deletePod();
    await pod.results();
    // A 5 s grace period leaves a 1 s margin before kubelet's SIGKILL, whatever the stop timeout is.
    expect(exitTime(pod.record('sc')) - deletedAt).toBeLessThan(4500);
    expect(pod.record('sc').rawExitCode).toBe(137);
  });
});
