/** Runs every benchmark one after the other and prints one Markdown table; `--quick` runs the short mode. */
import { execFileSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { isQuick, markdownTable, type Result } from './common.js';
import { benchHotUpgrade } from './hot-upgrade.js';
import { benchIdleMemory } from './idle-memory.js';
import { benchOrdering } from './ordering.js';
import { benchScaling } from './scaling.js';
import { benchStart } from './start.js';
import { benchThroughput } from './throughput.js';
import { benchWebhook } from './webhook.js';

const quick = isQuick();
const results: Result[] = [];
for (const bench of [benchStart, benchIdleMemory, benchOrdering, benchThroughput, benchWebhook, benchScaling, benchHotUpgrade]) {
  results.push(...(await bench(quick)));
}

const hyperfineVersion = execFileSync('hyperfine', ['--version'], { encoding: 'utf8' }).trim();
console.log(`Machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown model'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory; ${hyperfineVersion}; mode: ${quick ? 'quick' : 'full'}\n`);
console.log(markdownTable(results));
