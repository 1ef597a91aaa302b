-- Argo CD health of a dbops.io DatabaseBackupSchedule: Healthy while active and its last backup did not fail,
-- Suspended with spec.suspend, Degraded when the schedule, its most recent backup, or a run that could not start
-- (lastStartFailure without recoveredAt: its image, its env) failed.
local hs = {}
local function condition(conditions, type)
  if conditions == nil then return nil end
  for _, c in ipairs(conditions) do
    if c.type == type then return c end
  end
  return nil
end
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the dbops operator"
  return hs
end
local phase = obj.status.phase
local ready = condition(obj.status.conditions, "Ready")
local message = obj.status.message or ""
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then message = ready.message end
local last = obj.status.lastBackup
local stuck = obj.status.lastStartFailure
if phase == "Failed" or (ready ~= nil and ready.status == "False" and ready.reason == "InvalidSpec") then
  hs.status = "Degraded"
elseif phase == "Suspended" then
  hs.status = "Suspended"
elseif phase == "Active" and stuck ~= nil and stuck.recoveredAt == nil then
  hs.status = "Degraded"
elseif phase == "Active" and last ~= nil and last.phase == "Failed" then
  hs.status = "Degraded"
  message = "the last backup " .. (last.name or "") .. " failed"
elseif phase == "Active" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
if message == "" then message = "Schedule is " .. phase end
hs.message = message
return hs
