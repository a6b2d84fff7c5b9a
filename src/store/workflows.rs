//! Store verbs for workflows and stages.
