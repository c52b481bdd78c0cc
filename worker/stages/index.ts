/** The six stages, by name. */
import type { StageName } from '../../shared/stage.js';
import { checkStage } from './check.js';
import { connectStage } from './connect.js';
import { finishStage } from './finish.js';
import { migrateStage } from './migrate.js';
import { prepareStage } from './prepare.js';
import { recoverStage } from './recover.js';
import type { Stage } from './stage.js';

export function createStages(): Record<StageName, Stage> {
  return { check: checkStage, connect: connectStage, prepare: prepareStage, migrate: migrateStage, recover: recoverStage, finish: finishStage };
}
