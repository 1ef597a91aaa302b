"""Pure decisions: from spec, status and observed children to actions and new status."""
