/**
 * Every job kind a worker can serve, registered by importing its module. A new kind (LESS gradient
 * shards, kernel blocks) adds one import here; see docs/distributed.md.
 */
import './eval-slices.ts';

export { jobKindNames } from './jobs.ts';
