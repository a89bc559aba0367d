import { Command, Option } from 'commander';
import { supervisorOptions, toSupervisorConfig, type SupervisorOptionValues } from './config/options.js';

/** Registers `tandem supervise` and `tandem status`, the commands that run inside pods. */
export function addSupervisorCommands(program: Command): void {
  // The wrapped command's own options must reach it untouched, even ones that look like tandem's.
  program.enablePositionalOptions();
  const supervise = program
    .command('supervise')
    .description('Run a container command under supervision: start order, signals, exit codes, log copy.')
    .usage('[options] -- COMMAND [ARGS...]')
    .argument('<command...>', 'the command and its arguments, after --')
    .passThroughOptions()
    .action(async (argv: string[], options: SupervisorOptionValues) => {
      const [{ supervise: run }, { flushStdio }] = await Promise.all([import('./run.js'), import('./child/output.js')]);
      let config;
      try {
        config = toSupervisorConfig(options);
      } catch (error) {
        process.stderr.write(`tandem supervise: ${(error as Error).message}\n`);
        process.exit(2);
      }
      const exitCode = await run(config, argv);
      await flushStdio();
      process.exit(exitCode);
    });
  for (const option of supervisorOptions()) {
    supervise.addOption(option);
  }

  program
    .command('status')
    .description('Show the containers of this pod as tandem sees them in the shared volume.')
    .addOption(new Option('--shared-dir <dir>', 'shared volume of the pod').env('TANDEM_SHARED_DIR').default('/tandem'))
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (options: { sharedDir: string; output: 'table' | 'json' }) => {
      const { readStatus, formatStatusTable } = await import('./status.js');
      let status;
      try {
        status = await readStatus(options.sharedDir);
      } catch (error) {
        process.stderr.write(`tandem status: ${(error as Error).message}\n`);
        process.exit(1);
      }
      process.stdout.write(options.output === 'json' ? `${JSON.stringify(status, null, 2)}\n` : `${formatStatusTable(status.rows)}\n`);
    });
}
