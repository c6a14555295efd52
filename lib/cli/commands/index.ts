// Every ogd command, in the order --help lists them.
import type { Command } from '../command.js';
import { copy } from './copy.js';

export const commands: readonly Command[] = [copy];
