-- Spend per task, kept by a trigger from usage records. The per-task breaker
-- and task budgets read one row here instead of summing an index range, and a
-- charge updates one small row in place instead of inserting into a leaf of a
-- per-record index: with many tasks charging at once, that index dirtied one
-- page per task per commit, the largest share of a charge's WAL writes.
CREATE TABLE task_spend (
  org_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  calls INTEGER NOT NULL,
  cost_nanos INTEGER NOT NULL,
  billed_nanos INTEGER NOT NULL,
  PRIMARY KEY (org_id, task_id)
) WITHOUT ROWID;
INSERT INTO task_spend (org_id, task_id, calls, cost_nanos, billed_nanos)
  SELECT org_id, task_id, count(*), sum(cost_nanos), sum(billed_nanos)
  FROM usage_records WHERE task_id IS NOT NULL GROUP BY org_id, task_id;
CREATE TRIGGER usage_records_task_spend AFTER INSERT ON usage_records
WHEN NEW.task_id IS NOT NULL BEGIN
  INSERT INTO task_spend (org_id, task_id, calls, cost_nanos, billed_nanos)
  VALUES (NEW.org_id, NEW.task_id, 1, NEW.cost_nanos, NEW.billed_nanos)
  ON CONFLICT (org_id, task_id) DO UPDATE SET calls = calls + 1,
    cost_nanos = cost_nanos + NEW.cost_nanos, billed_nanos = billed_nanos + NEW.billed_nanos;
END;
DROP INDEX usage_records_task;
