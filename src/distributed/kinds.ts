/**
 * Every job kind a worker can serve, registered by importing its module. A new kind adds one import
 * here; see docs/distributed.md.
 */
import './eval-slices.ts';
import './less-shards.ts';
import './kernel-blocks.ts';

export { jobKindNames } from './jobs.ts';
