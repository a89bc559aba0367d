import { chmodSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import type { ContainerRecord } from '../../supervisor/protocol/record.js';
import { cliPath, delay, logEvents, makeSharedDir, superviseArgs, tandem, writePod } from '../support/tandem.js';

function readRecordOf(shared: string, name: string): ContainerRecord {
  return JSON.parse(readFileSync(path.join(shared, 'state', `${name}.json`), 'utf8')) as ContainerRecord;
}

const pod = [
  { name: 'proxy', role: 'sidecar' as const, priority: 1, readiness: 'started' },
  { name: 'worker', role: 'app' as const, priority: 0 },
];

describe('pod lifecycle over the shared directory', () => {
  it('app starts only after the sidecar is ready', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod);
    const app = tandem(superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'date +%s%N > "$0/app-started"', shared]));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));

    const appResult = await app;
    const sidecarResult = await sidecar;
    expect(appResult.exitCode).toBe(0);
    expect(sidecarResult.exitCode).toBe(0);

    const appStartedMs = Number(readFileSync(path.join(shared, 'app-started'), 'utf8')) / 1e6;
    const sidecarReadyMs = Date.parse(readRecordOf(shared, 'proxy').times.ready!);
    expect(appStartedMs).toBeGreaterThanOrEqual(sidecarReadyMs);
    console.log(`sidecar ready -> app command started: ${(appStartedMs - sidecarReadyMs).toFixed(1)} ms`);
  });

  it('Job: app exit 3 stops the sidecar with 0', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'Never');
    const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));
    const app = await tandem(superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'sleep 0.5; exit 3']));
    const sidecarResult = await sidecar;

    expect(app.exitCode).toBe(3);
    expect(sidecarResult.exitCode).toBe(0);
    const sidecarRecord = readRecordOf(shared, 'proxy');
    expect(sidecarRecord.rawExitCode).toBe(143);
    expect(sidecarResult.stderr).toContain('terminated by signal 15 on request');

    const stopMs = Date.parse(sidecarRecord.times.exited!) - Date.parse(readRecordOf(shared, 'worker').times.exited!);
    console.log(`last app exit -> sidecar exit: ${stopMs} ms`);
    expect(stopMs).toBeLessThan(3000);
  });

  it('Job: sidecar trapping TERM with 143 exits 0', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'Never');
    const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sh', '-c', 'trap "exit 143" TERM; while :; do sleep 0.1; done']));
    await tandem(superviseArgs(shared, 'worker', 'app', ['sleep', '0.2']));
    const result = await sidecar;
    expect(result.exitCode).toBe(0);
    expect(readRecordOf(shared, 'proxy').rawExitCode).toBe(143);
  });

  it('OnFailure: failed app leaves the sidecar running', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'OnFailure');
    const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));
    const first = await tandem(superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'exit 1']));
    expect(first.exitCode).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(readRecordOf(shared, 'proxy').phase).toBe('ready');

    const second = await tandem(superviseArgs(shared, 'worker', 'app', ['true']));
    expect(second.exitCode).toBe(0);
    expect(readRecordOf(shared, 'worker').generation).toBe(1);
    expect((await sidecar).exitCode).toBe(0);
  });

  it('late sidecar sees finished apps and never starts', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'proxy', role: 'sidecar', priority: 0 }, { name: 'worker', role: 'app', priority: 0 }], 'Never');
    await tandem(superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'exit 2']));
    const sidecar = await tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sh', '-c', 'touch "$0/sidecar-ran"; sleep 1000', shared]));

    expect(sidecar.exitCode).toBe(0);
    expect(() => readFileSync(path.join(shared, 'sidecar-ran'))).toThrow();
    expect(logEvents(sidecar.stderr).some((event) => event.event === 'not-started')).toBe(true);
  });

  it('startup timeout names the sidecar and skips the command', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'Never');
    const app = await tandem(superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'touch "$0/app-ran"', shared], ['--startup-timeout', '1s']));

    expect(app.exitCode).toBe(124);
    expect(app.stderr).toContain('proxy not ready after 1s');
    expect(() => readFileSync(path.join(shared, 'app-ran'))).toThrow();
  });

  it('SIGTERM while waiting exits 143 without starting', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'Never');
    const app = tandem(superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'touch "$0/app-ran"', shared]));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    app.kill('SIGTERM');
    const result = await app;

    expect(result.exitCode).toBe(143);
    expect(() => readFileSync(path.join(shared, 'app-ran'))).toThrow();
  });

  it('unknown container name is rejected', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'Never');
    const result = await tandem(superviseArgs(shared, 'ghost', 'app', ['true']));
    expect(result.exitCode).toBe(2);
    const failure = logEvents(result.stderr).find((event) => event.event === 'failed');
    expect(failure?.msg).toContain('"ghost" is not in the pod spec');
  });

  it('status lists every container', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'Never');
    const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));
    await tandem(superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'exit 3']));
    await sidecar;

    const table = await tandem(['status', '--shared-dir', shared]);
    expect(table.stdout).toMatch(/^NAME\s+ROLE\s+PRIORITY\s+PHASE\s+READY\s+RESTARTS\s+EXIT/);
    expect(table.stdout).toMatch(/proxy\s+sidecar\s+1\s+exited\s+false\s+0\s+0 \(raw 143\)/);
    expect(table.stdout).toMatch(/worker\s+app\s+0\s+exited\s+-\s+0\s+3/);

    const json = JSON.parse((await tandem(['status', '--shared-dir', shared, '--output', 'json'])).stdout);
    expect(json.rows.map((row: { name: string }) => row.name)).toEqual(['proxy', 'worker']);
  });
});

describe('tandem status of a dead supervisor', () => {
  it('shows it exited 137', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'proxy', role: 'sidecar', priority: 1 }], 'Always');
    const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));
    const recordPath = path.join(shared, 'state', 'proxy.json');
    const isReady = (): boolean => {
      try {
        return readFileSync(recordPath, 'utf8').includes('"phase":"ready"');
      } catch {
        return false;
      }
    };
    for (let attempt = 0; attempt < 200 && !isReady(); attempt += 1) {
      await delay(50);
    }
    expect(isReady()).toBe(true);
    const { pid } = JSON.parse(readFileSync(recordPath, 'utf8')) as { pid: number };
    sidecar.kill('SIGKILL');
    process.kill(pid, 'SIGKILL');
    await sidecar;

    const table = await tandem(['status', '--shared-dir', shared]);
    expect(table.stdout).toMatch(/proxy\s+sidecar\s+1\s+exited\s+false\s+0\s+137 .*supervisor died without writing a record/);
  });
});

describe('platform markers in the environment', () => {
  it('ECI_SIDECAR_CONTAINER makes a sidecar', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'proxy', role: 'app', priority: 0 }, { name: 'worker', role: 'app', priority: 0 }], 'Never');
    const sidecar = tandem(['supervise', '--shared-dir', shared, '--name', 'proxy', '--', 'sleep', '1000'], {
      env: { ECI_SIDECAR_CONTAINER: 'true', ECI_CONTAINER_LAUNCH_PRIORITY: '5', ECI_CONTAINER_EXIT_PRIORITY: '-5' },
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await tandem(superviseArgs(shared, 'worker', 'app', ['true']));
    const result = await sidecar;

    expect(result.exitCode).toBe(0);
    expect(readRecordOf(shared, 'proxy').role).toBe('sidecar');
    expect(readRecordOf(shared, 'proxy').priority).toBe(5);
  });

  it('invalid priority marker is rejected', async () => {
    const result = await tandem(['supervise', '--', 'true'], { env: { KRUISE_CONTAINER_PRIORITY: 'high' } });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('Invalid KRUISE_CONTAINER_PRIORITY "high"');
  });
});

describe('watching without inotify', () => {
  /** Runs tandem in a user namespace whose inotify instance limit is 0, so every watch fails with EMFILE. */
  function tandemWithoutInotify(args: string[]) {
    const script = 'echo 0 > /proc/sys/user/max_inotify_instances && exec node "$@"';
    return execa('unshare', ['--user', '--map-root-user', 'sh', '-c', script, 'sh', cliPath, ...args], { reject: false });
  }

  it('polling fallback still completes the Job', async () => {
    const shared = makeSharedDir();
    await writePod(shared, pod, 'Never');
    const sidecar = tandemWithoutInotify(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));
    const app = await tandemWithoutInotify(superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'exit 3']));
    const sidecarResult = await sidecar;

    expect(app.exitCode).toBe(3);
    expect(sidecarResult.exitCode).toBe(0);
    const warning = logEvents(String(sidecarResult.stderr)).find((event) => event.event === 'watch-polling');
    expect(warning?.msg).toContain('EMFILE');
  });
});

describe('containers running as different users', () => {
  it('two UIDs share the state directory', async () => {
    const shared = makeSharedDir();
    // The layout tandem install creates: a readable root, and state and logs writable by every user.
    chmodSync(shared, 0o755);
    chmodSync(path.join(shared, 'state'), 0o1777);
    chmodSync(path.join(shared, 'logs'), 0o1777);
    await writePod(shared, pod, 'Never');
    const asUser = (uid: number, args: string[]) =>
      execa('setpriv', ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', 'node', cliPath, ...args], { reject: false });

    const sidecar = asUser(1001, superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));
    const app = await asUser(1002, superviseArgs(shared, 'worker', 'app', ['sh', '-c', 'exit 5']));
    const sidecarResult = await sidecar;

    expect(app.exitCode).toBe(5);
    expect(sidecarResult.exitCode).toBe(0);
    expect(statSync(path.join(shared, 'state', 'proxy.json')).uid).toBe(1001);
    expect(statSync(path.join(shared, 'state', 'worker.json')).uid).toBe(1002);
    expect(readFileSync(path.join(shared, 'logs', 'proxy', '0.log'), 'utf8')).toBe('');
  });
});
