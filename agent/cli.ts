#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { addInjectCommand } from './inject/command.js';
import { addInstallCommand } from './runtime/command.js';
import { addWebhookCommand } from './webhook/command.js';
import { addSupervisorCommands } from '../supervisor/command.js';
import { VERSION } from './version.js';

/**
 * Builds the `tandem` command line. Each command module registers its options only and loads its
 * implementation when it runs, so a supervisor start does not parse the injector's code.
 */
export function createProgram(): Command {
  const program = new Command('tandem')
    .description('Sidecar lifecycle agent for Kubernetes pods.')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  addSupervisorCommands(program);
  addInjectCommand(program);
  addInstallCommand(program);
  addWebhookCommand(program);
  return program;
}

/** Exit code for invalid usage, the same as `tandem supervise` returns for an invalid configuration. */
const USAGE_EXIT_CODE = 2;

try {
  await createProgram().parseAsync(process.argv);
} catch (error) {
  if (!(error instanceof CommanderError)) {
    throw error;
  }
  // Commander has already printed the message; help and version requests are not errors.
  process.exit(error.exitCode === 0 ? 0 : USAGE_EXIT_CODE);
}
