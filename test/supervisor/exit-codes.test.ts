import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tandem } from '../support/tandem.js';

describe('supervise exit codes', () => {
  it.each([
    ['exit 0', 0],
    ['exit 3', 3],
    ['kill -KILL $$', 137],
    ['kill -SEGV $$', 139],
    ['kill -TERM $$', 143],
  ])('sh -c %j exits %i', async (script, expected) => {
    const result = await tandem(['supervise', '--', 'sh', '-c', script]);
    expect(result.exitCode).toBe(expected);
  });

  it('missing command exits 127 naming it', async () => {
    const result = await tandem(['supervise', '--', '/no/such/command']);
    expect(result.exitCode).toBe(127);
    expect(result.stderr).toContain('/no/such/command');
  });

  it('non-executable file exits 126 naming it', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'tandem-')), 'not-executable');
    writeFileSync(file, 'data');
    chmodSync(file, 0o644);
    const result = await tandem(['supervise', '--', file]);
    expect(result.exitCode).toBe(126);
    expect(result.stderr).toContain(file);
  });

  it('file without #! or ELF header exits 126', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'tandem-')), 'plain-text');
    writeFileSync(file, 'echo this would run under sh\n');
    chmodSync(file, 0o755);
    const result = await tandem(['supervise', '--', file]);
    expect(result.exitCode).toBe(126);
    expect(result.stderr).toContain('exec format error');
    expect(result.stdout).toBe('');
  });

  it('invalid option value exits 2 naming option and value', async () => {
    const result = await tandem(['supervise', '--stop-timeout', '5x', '--', 'true']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('--stop-timeout');
    expect(result.stderr).toContain("'5x'");
  });

  it('invalid environment value exits 2 naming the variable', async () => {
    const result = await tandem(['supervise', '--', 'true'], { env: { TANDEM_STOP_SIGNAL: 'SIGNOPE' } });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('TANDEM_STOP_SIGNAL');
    expect(result.stderr).toContain('SIGNOPE');
  });
});
