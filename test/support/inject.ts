import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cliPath } from './tandem.js';

export interface InjectCliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built `tandem inject --no-registry ARGS FILE` as a real process on `input` written to a
 * temporary file. Registry lookups are off so that no test depends on a network.
 */
export function runInjectCli(args: readonly string[], input: string): InjectCliResult {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'tandem-inject-')), 'input.yaml');
  writeFileSync(file, input);
  const result = spawnSync(process.execPath, [cliPath, 'inject', '--no-registry', ...args, file], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
