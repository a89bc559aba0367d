import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeSharedDir, superviseArgs, tandem, writePod } from '../support/tandem.js';

const CRI_LINE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z) (stdout|stderr) (F|P) (.*)$/;

describe('supervise log copy', () => {
  it('writes CRI lines and passes output through', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }]);
    const script = 'echo "first line"; echo "to stderr" >&2; printf "no newline at end"';
    const result = await tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', script]), { stripFinalNewline: false });

    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe('first line\nno newline at end');
    expect(result.stderr).toContain('to stderr\n');

    const lines = readFileSync(path.join(shared, 'logs', 'web', '0.log'), 'utf8').trimEnd().split('\n');
    const parsed = lines.map((line) => CRI_LINE.exec(line));
    expect(parsed.every((match) => match !== null)).toBe(true);
    const records = parsed.map((match) => [match![2], match![3], match![4]]);
    expect(records).toContainEqual(['stdout', 'F', 'first line']);
    expect(records).toContainEqual(['stderr', 'F', 'to stderr']);
    expect(records).toContainEqual(['stdout', 'F', 'no newline at end']);
  });

  it('splits long lines into partial records', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }]);
    const result = await tandem(superviseArgs(shared, 'web', 'app', ['node', '-e', 'console.log("x".repeat(40000))']));
    expect(result.exitCode).toBe(0);

    const lines = readFileSync(path.join(shared, 'logs', 'web', '0.log'), 'utf8').trimEnd().split('\n');
    const tags = lines.map((line) => CRI_LINE.exec(line)![3]);
    expect(tags).toEqual(['P', 'P', 'F']);
    const content = lines.map((line) => CRI_LINE.exec(line)![4]).join('');
    expect(content).toBe('x'.repeat(40000));
  });

  it('second run of a container logs to 1.log', async () => {
    const shared = makeSharedDir();
    await writePod(shared, [{ name: 'web', role: 'app', priority: 0 }], 'OnFailure');
    await tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', 'echo run one; exit 1']));
    await tandem(superviseArgs(shared, 'web', 'app', ['sh', '-c', 'echo run two']));

    expect(readFileSync(path.join(shared, 'logs', 'web', '0.log'), 'utf8')).toContain('run one');
    expect(readFileSync(path.join(shared, 'logs', 'web', '1.log'), 'utf8')).toContain('run two');
  });
});
