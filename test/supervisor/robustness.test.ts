import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { delay, isAlive, logEvents, makeSharedDir, superviseArgs, tandem, waitForOutput, writePod } from '../support/tandem.js';

async function remountReadOnly(mountPoint: string): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    const result = await execa('mount', ['-o', 'remount,ro', mountPoint], { reject: false });
    if (result.exitCode === 0) {
      return;
    }
    if (attempt === 20) {
      throw new Error(`remounting ${mountPoint} read-only failed: ${result.stderr}`);
    }
    await delay(50);
  }
}

describe('supervise robustness', () => {
  it('record write failure never crashes', async () => {
    const shared = makeSharedDir();
    const state = path.join(shared, 'state');
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tandem-state', state]);
    let child: ReturnType<typeof tandem> | undefined;
    try {
      await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }]);
      child = tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', 'echo started; sleep 2; echo done']));
      await waitForOutput(child, 'started');
      // A read-only remount makes every later record write fail with EROFS, as a full or broken volume
      // would. It fails with EBUSY while a record is being written, so it is retried.
      await remountReadOnly(state);
      const result = await child;

      expect(result.exitCode).toBe(0);
      expect(result.stdout).toContain('done');
      expect(logEvents(result.stderr).some((event) => event.event === 'record-write-failed')).toBe(true);
    } finally {
      child?.kill('SIGKILL');
      await execa('umount', ['--lazy', state], { reject: false });
    }
  });

  it('stop timeout also kills orphaned descendants', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tandem-orphan-'));
    const child = tandem(['supervise', '--stop-timeout', '1s', '--', 'sh', '-c', `(trap "" TERM; exec sleep 999) & echo $! > ${dir}/pid; echo started; wait`]);
    await waitForOutput(child, 'started');
    await delay(200);
    child.kill('SIGTERM');
    await child;
    expect(isAlive(Number(readFileSync(path.join(dir, 'pid'), 'utf8')))).toBe(false);
  });

  it.each([['../evil'], [''], ['UPPER'], ['--']])('container name %j is rejected', async (name) => {
    const result = await tandem(['supervise', '--name', name, '--', 'true']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('Kubernetes container name');
  });

  it('pod spec with a duplicate name is rejected', async () => {
    const shared = makeSharedDir();
    writeFileSync(
      path.join(shared, 'state', 'pod.json'),
      JSON.stringify({ version: 1, restartPolicy: 'Never', terminationGracePeriodSeconds: 30, containers: [{ name: 'web', role: 'app', priority: 0 }, { name: 'web', role: 'sidecar', priority: 1 }] }),
    );
    const result = await tandem(superviseArgs(shared, 'web', 'app', ['true']));
    expect(result.exitCode).toBe(2);
    expect(logEvents(result.stderr).find((event) => event.event === 'failed')?.msg).toContain('"web" appears twice');
  });

  it('timer overflow duration is rejected', async () => {
    const result = await tandem(['supervise', '--stop-timeout', '3000000', '--', 'true']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('at most 2147483647ms');
  });

  it('status names a missing shared volume', async () => {
    const result = await tandem(['status', '--shared-dir', '/nonexistent/tandem']);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('/nonexistent/tandem/state not found');
  });
});
