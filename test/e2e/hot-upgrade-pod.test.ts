import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { podFromObject } from '../../examples/local-pod.js';
import { poll, Podman } from '../../examples/podman.js';
import { activatedHttpImage, buildActivatedHttpImages } from '../../images/activated-http/build.js';
import { buildImages, BUSYBOX_IMAGE, EMPTY_IMAGE } from '../../images/build.js';
import { cliPath, repoRoot } from '../support/tandem.js';

/**
 * An OpenKruise SidecarSet hot upgrade in a real pod. `tandem inject` writes the two slots of the
 * sidecar `mesh` and podman plays the pod. The test then replaces the slots' containers one at a
 * time as Kruise's controller does, v1 → v2 → v1, while HTTP load runs inside the pod's network
 * namespace. The sidecar is images/activated-http, which serves on the socket that tandem passes
 * by socket activation and hands from slot to slot. docs/podman.md lists what differs from Kruise.
 */

const TANDEM_IMAGE = 'localhost/tandem:dev';
const POD_NAME = 'e2e-hot-upgrade';
const PORT = 8080;
const AUTOCANNON = path.join(repoRoot, 'node_modules', 'autocannon', 'autocannon.js');

/** One row of `tandem status --output json`, with the fields this test reads. */
interface StatusRow {
  name: string;
  phase: string;
  ready?: boolean;
  slotVersion?: string;
  reason?: string;
  handoff?: { from: string; fromVersion: string; phase: string; durationMs?: number };
  drained?: { for: string; drainMs: number; exitCode?: number };
}

/** The parts of `podman container inspect` that a replacement container copies. */
interface ContainerInspect {
  Id: string;
  Image: string;
  ImageName: string;
  Pod: string;
  OCIConfigPath: string;
  State: { Pid: number };
  Config: { Env: string[]; User: string; WorkingDir: string; StopSignal: number; StopTimeout: number; Annotations: Record<string, string> };
  HostConfig: { RestartPolicy: { Name: string; MaximumRetryCount: number }; NetworkMode: string };
  Mounts: { Type: string; Name?: string; Source: string; Destination: string; RW: boolean }[];
}

/** Totals of one autocannon run. */
interface LoadResult {
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  resets: number;
}

/** Totals of the slow-request client: responses per version and failed requests. */
interface SlowResult {
  versions: Record<string, number>;
  failures: string[];
}

const SIDECARSET = `
apiVersion: apps.kruise.io/v1alpha1
kind: SidecarSet
metadata:
  name: mesh
spec:
  selector:
    matchLabels: { app: web }
  containers:
    - name: mesh
      image: ${activatedHttpImage('v1')}
      command: ["/activated-http"]
      env:
        - { name: TANDEM_LISTEN, value: "tcp:127.0.0.1:${PORT}" }
        - { name: TANDEM_DRAIN_TIMEOUT, value: "10s" }
      upgradeStrategy:
        upgradeType: HotUpgrade
        hotUpgradeEmptyImage: ${EMPTY_IMAGE}
`;

const DEPLOYMENT = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: { app: web }
  template:
    metadata:
      labels: { app: web }
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: app
          image: ${BUSYBOX_IMAGE}
          command: ["sh", "-c", "trap 'exit 0' TERM; echo app running; while true; do sleep 0.2; done"]
`;

/**
 * A client for slow requests, run with `node -e` in the pod's network namespace: `connections`
 * keep-alive loops of `/slow?ms=DELAY`, bounded by a deadline and a request count, that print
 * the responses per version and the failures as JSON.
 */
const SLOW_CLIENT = `
const http = require('node:http');
const [port, connections, delayMs, durationMs, maxRequests] = process.argv.slice(1).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const versions = {};
const failures = [];
const deadline = Date.now() + durationMs;
let sent = 0;
function get() {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, path: '/slow?ms=' + delayMs, agent, timeout: 15000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () => (response.statusCode === 200 ? resolve(body.trim()) : reject(new Error('status ' + response.statusCode))));
    });
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end();
  });
}
async function loop() {
  while (Date.now() < deadline && sent < maxRequests) {
    sent += 1;
    try {
      const answer = await get();
      versions[answer] = (versions[answer] ?? 0) + 1;
    } catch (error) {
      failures.push(error.message);
    }
  }
}
Promise.all(Array.from({ length: connections }, loop)).then(() => {
  agent.destroy();
  console.log(JSON.stringify({ versions, failures }));
});
`;

describe('hot upgrade in a podman pod', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'tandem-e2e-hot-upgrade-'));
  const podman = new Podman(path.join(workDir, 'podman'));

  beforeAll(async () => {
    await buildImages({ repoRoot, containersConf: podman.containersConf, testImages: true });
    await buildActivatedHttpImages({ repoRoot, containersConf: podman.containersConf, versions: ['v1', 'v2'] });
  }, 600_000);

  afterAll(async () => {
    await podman.removePod(POD_NAME);
  }, 120_000);

  /** Injects the SidecarSet into the Deployment with the real CLI and plays the pod. */
  async function startPod(): Promise<void> {
    const sidecarSetFile = path.join(workDir, 'sidecarset.yaml');
    writeFileSync(sidecarSetFile, SIDECARSET);
    const result = await execa('node', [cliPath, 'inject', '--image', TANDEM_IMAGE, '--sidecarset', sidecarSetFile, '-'], { input: DEPLOYMENT, reject: false });
    if (result.exitCode !== 0) {
      throw new Error(`tandem inject failed with code ${result.exitCode}: ${result.stderr}`);
    }
    const injected = parse(result.stdout);
    await podman.play(POD_NAME, stringify(podFromObject(injected, POD_NAME)));
  }

  async function inspect(container: string): Promise<ContainerInspect> {
    const [entry] = JSON.parse(await podman.run(['container', 'inspect', '--format', 'json', container])) as ContainerInspect[];
    if (entry === undefined) {
      throw new Error(`podman container inspect ${container} returned no container.`);
    }
    return entry;
  }

  /**
   * Replaces a slot's container as kubelet does when Kruise changes the container's image in the
   * pod spec. The old container is stopped with its grace period and removed. A new one with the
   * same command, mounts, env, user and restart policy is then created in the pod from `image`.
   *
   * Kruise also sets the slot's version annotations, and kubelet passes them to the new container
   * through the downward API. podman cannot change the annotations of a running pod, so the two
   * version variables are set directly in the new container. The container's copy of the
   * annotations gets the new versions and working slot too, but nothing reads it.
   */
  async function replaceSlot(slot: string, image: string, version: string, altVersion: string): Promise<void> {
    const name = `${POD_NAME}-${slot}`;
    const old = await inspect(name);
    // podman 4.3 joins the entrypoint's words with spaces in inspect; the OCI spec keeps the exact argv.
    const argv = (JSON.parse(readFileSync(old.OCIConfigPath, 'utf8')) as { process: { args: string[] } }).process.args;
    // Env and user that came from the old image are left to the new image, as kubelet derives them.
    const oldImage = JSON.parse(await podman.run(['image', 'inspect', '--format', '{{json .Config}}', old.Image])) as { Env?: string[]; User?: string };
    const imageEnv = new Set(oldImage.Env ?? []);
    const env = old.Config.Env.filter((entry) => !imageEnv.has(entry) && !entry.startsWith('HOSTNAME=') && !/^SIDECARSET_VERSION(_ALT)?=/.test(entry));
    env.push(`SIDECARSET_VERSION=${version}`, `SIDECARSET_VERSION_ALT=${altVersion}`);
    const annotations = { ...old.Config.Annotations, [`version.sidecarset.kruise.io/${slot}`]: version, [`versionalt.sidecarset.kruise.io/${slot}`]: altVersion };
    if (version !== '0') {
      annotations['kruise.io/sidecarset-working-hotupgrade-container'] = JSON.stringify({ mesh: slot });
    }

    await podman.run(['stop', '--time', String(old.Config.StopTimeout), name]);
    await podman.run(['rm', name]);

    // --pod joins the network namespace of the pod's infra container, which has --network none, so
    // no --network is given here. The NetworkMode check below confirms the shared namespace.
    const args = ['create', '--pod', old.Pod, '--name', name, '--entrypoint', JSON.stringify(argv)];
    args.push('--restart', old.HostConfig.RestartPolicy.Name || 'no', '--stop-signal', String(old.Config.StopSignal), '--stop-timeout', String(old.Config.StopTimeout));
    if (old.Config.User !== '' && old.Config.User !== oldImage.User) {
      args.push('--user', old.Config.User);
    }
    if (old.Config.WorkingDir !== '' && old.Config.WorkingDir !== '/') {
      args.push('--workdir', old.Config.WorkingDir);
    }
    for (const entry of env) {
      args.push('--env', entry);
    }
    for (const [key, value] of Object.entries(annotations)) {
      // podman's own annotations (io.*, org.opencontainers.*) are set again by podman create.
      if (!key.startsWith('io.') && !key.startsWith('org.opencontainers.')) {
        // podman reads each --annotation value as a CSV field, so quotes are doubled inside quotes.
        args.push('--annotation', `"${`${key}=${value}`.replaceAll('"', '""')}"`);
      }
    }
    for (const mount of old.Mounts) {
      const source = mount.Type === 'volume' ? mount.Name! : mount.Source;
      args.push('--mount', `type=${mount.Type},source=${source},destination=${mount.Destination}${mount.RW ? '' : ',ro'}`);
    }
    await podman.run([...args, image]);
    await podman.run(['start', name]);

    const created = await inspect(name);
    expect(created.Pod, `${slot} is in the pod`).toBe(old.Pod);
    expect(created.HostConfig.NetworkMode, `${slot} shares the pod's network namespace`).toBe(old.HostConfig.NetworkMode);
  }

  /** Reads the pod's records with `tandem status` in the app container. */
  async function status(): Promise<Map<string, StatusRow>> {
    const output = await podman.exec(`${POD_NAME}-app`, ['/tandem/bin/tandem', 'status', '--shared-dir', '/tandem', '--output', 'json']);
    const rows = (JSON.parse(output) as { rows: StatusRow[] }).rows;
    return new Map(rows.map((row) => [row.name, row]));
  }

  async function waitForSlot(what: string, check: (rows: Map<string, StatusRow>) => boolean, timeoutMs = 30_000): Promise<Map<string, StatusRow>> {
    return poll(what, timeoutMs, async () => {
      const rows = await status();
      return check(rows) ? rows : undefined;
    });
  }

  /** Sends one request from the app container, inside the pod, and returns the response body. */
  async function get(): Promise<string> {
    return (await podman.exec(`${POD_NAME}-app`, ['wget', '-q', '-O', '-', `http://127.0.0.1:${PORT}/`])).trim();
  }

  /** Runs a host program in the pod's network namespace, entered through the app container's PID. */
  function inPodNetwork(pid: number, command: readonly string[]) {
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    return execa('nsenter', ['--target', String(pid), '--net', '--', ...command], { env, extendEnv: false, reject: false });
  }

  it('slots hand over v1 → v2 → v1 with no failed request', async () => {
    await startPod();

    // 1. Injected and played: mesh-1 serves v1, mesh-2 runs the empty image and is parked.
    let rows = await waitForSlot('mesh-1 ready and mesh-2 parked', (current) => current.get('mesh-1')?.phase === 'ready' && current.get('mesh-2')?.phase === 'parked');
    expect(rows.get('mesh-1')).toMatchObject({ slotVersion: '1', ready: true });
    expect(rows.get('mesh-2')).toMatchObject({ slotVersion: '0', reason: 'empty slot (version 0)' });
    await waitForSlot('the app to run', (current) => current.get('app')?.phase === 'running');
    expect((await inspect(`${POD_NAME}-mesh-2`)).ImageName).toBe(EMPTY_IMAGE);
    expect(await get()).toBe('version=v1');

    const infra = JSON.parse(await podman.run(['pod', 'inspect', '--format', '{{json .InfraContainerID}}', POD_NAME])) as string;
    expect((await inspect(infra)).HostConfig.NetworkMode).toBe('none');

    // 2. Load inside the pod's network namespace: keep-alive requests on 16 connections, and
    // slow requests that are in flight while each old version drains.
    const appPid = (await inspect(`${POD_NAME}-app`)).State.Pid;
    // The load outlasts both hand-offs, which took 11 to 17 s from the load's start on 2 busy cores.
    const loadSeconds = 30;
    const loadStartedAt = Date.now();
    const load = inPodNetwork(appPid, ['node', AUTOCANNON, '--json', '--connections', '16', '--duration', String(loadSeconds), `http://127.0.0.1:${PORT}/`]);
    const slow = inPodNetwork(appPid, ['node', '-e', SLOW_CLIENT, String(PORT), '4', '300', String(loadSeconds * 1000), '2000']);
    await new Promise((resolve) => setTimeout(resolve, 2000));

    // 3. Upgrade: Kruise puts the new image in the empty slot with the next version, 2.
    await replaceSlot('mesh-2', activatedHttpImage('v2'), '2', '1');
    rows = await waitForSlot('mesh-2 to take over', (current) => current.get('mesh-2')?.handoff?.phase === 'done' && current.get('mesh-1')?.phase === 'parked');
    expect(rows.get('mesh-2')).toMatchObject({ phase: 'ready', slotVersion: '2', handoff: { from: 'mesh-1', fromVersion: '1', phase: 'done' } });
    expect(rows.get('mesh-1')).toMatchObject({ phase: 'parked', slotVersion: '1', drained: { for: 'mesh-2' } });
    expect(await get()).toBe('version=v2');

    // Then it resets the old slot to the empty image with version 0.
    await replaceSlot('mesh-1', EMPTY_IMAGE, '0', '2');
    rows = await waitForSlot('mesh-1 parked as the empty slot', (current) => current.get('mesh-1')?.phase === 'parked' && current.get('mesh-1')?.slotVersion === '0');
    expect(rows.get('mesh-1')?.reason).toBe('empty slot (version 0)');
    expect(rows.get('mesh-2')).toMatchObject({ phase: 'ready', slotVersion: '2' });
    await new Promise((resolve) => setTimeout(resolve, 2000));

    // 4. Rollback: v1 again, in the empty slot, with the next version number, 3.
    await replaceSlot('mesh-1', activatedHttpImage('v1'), '3', '2');
    rows = await waitForSlot('mesh-1 to take over', (current) => current.get('mesh-1')?.handoff?.phase === 'done' && current.get('mesh-2')?.phase === 'parked');
    const rollbackDoneAt = Date.now();
    expect(rows.get('mesh-1')).toMatchObject({ phase: 'ready', slotVersion: '3', handoff: { from: 'mesh-2', fromVersion: '2', phase: 'done' } });
    expect(rows.get('mesh-2')).toMatchObject({ phase: 'parked', slotVersion: '2', drained: { for: 'mesh-1', exitCode: 0 } });
    expect(await get()).toBe('version=v1');

    const table = await podman.exec(`${POD_NAME}-app`, ['/tandem/bin/tandem', 'status', '--shared-dir', '/tandem']);
    console.log(table);
    expect(table).toMatch(/VERSION\s+HANDOFF/);
    expect(table).toMatch(/mesh-1 .* ready .* 3 +from mesh-2 v2: done \d+ms/);
    expect(table).toMatch(/mesh-2 .* parked .* 2 +from mesh-1 v1: done \d+ms; drained for mesh-1 in \d+ms/);

    // Kruise resets the drained slot to the empty image again.
    await replaceSlot('mesh-2', EMPTY_IMAGE, '0', '3');
    rows = await waitForSlot('mesh-2 parked as the empty slot', (current) => current.get('mesh-2')?.phase === 'parked' && current.get('mesh-2')?.slotVersion === '0');
    expect(rows.get('mesh-1')).toMatchObject({ phase: 'ready', slotVersion: '3' });
    expect(rows.get('app')?.phase).toBe('running');

    const loadRun = await load;
    const slowRun = await slow;
    expect(loadRun.exitCode, loadRun.stderr).toBe(0);
    expect(slowRun.exitCode, slowRun.stderr).toBe(0);
    const report = JSON.parse(loadRun.stdout) as { requests: { total: number }; errors: number; timeouts: number; non2xx: number; resets?: number };
    const loadResult: LoadResult = { requests: report.requests.total, errors: report.errors, timeouts: report.timeouts, non2xx: report.non2xx, resets: report.resets ?? 0 };
    const slowResult = JSON.parse(slowRun.stdout) as SlowResult;
    console.log(
      `hot upgrade in podman, v1 → v2 → v1: ${loadResult.requests} requests, ${loadResult.errors} errors, ${loadResult.timeouts} timeouts, ` +
        `${loadResult.non2xx} non-2xx, ${loadResult.resets} resets; slow requests ${JSON.stringify(slowResult.versions)}, ${slowResult.failures.length} failed; ` +
        `both hand-offs within ${Math.round((rollbackDoneAt - loadStartedAt) / 1000)} s of ${loadSeconds} s of load`,
    );
    // Both hand-offs happened while the load ran.
    expect(rollbackDoneAt - loadStartedAt).toBeLessThan(loadSeconds * 1000);
    expect(loadResult).toMatchObject({ errors: 0, timeouts: 0, non2xx: 0, resets: 0 });
    expect(loadResult.requests).toBeGreaterThan(1000);
    expect(slowResult.failures).toEqual([]);
    expect(Object.keys(slowResult.versions).sort()).toEqual(['version=v1', 'version=v2']);
  }, 300_000);
});
