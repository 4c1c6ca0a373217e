-- enqueue.lua: a new task enters its line and is matched at once (docs/routing.md, `enqueue`).
-- KEYS[1] - the domain anchor (reservation counter)
-- ARGV[1] - key prefix; ARGV[2] - now_ms; ARGV[3] - policy (msgpack)
-- ARGV[4] - msgpack {task, customer, channel, group, prio, last, sk (skills signature),
--           ob (outbound work only: the tiers that may work it, 'CCS,PAM')}
-- Returns msgpack effect rows, or {err, msg}: conflict when the task id exists.

return main(function()
  local id = ARG.task
  if task(id) then return refuse('conflict', 'task ' .. id .. ' already exists') end
  local last = ARG.last
  if POL.last_ms <= 0 then last = '' end
  local pu = 0
  if last ~= '' then pu = NOW + POL.last_ms end
  local t = {id = id, cust = ARG.customer, ch = ARG.channel, grp = ARG.group, prio = ARG.prio,
             enq = NOW, last = last, pu = pu, st = 'queued', ag = '', res = '', dl = 0, rs = '',
             hf = '', part = '', ans = false, tr = '', trn = 0, sk = ARG.sk or '', ob = ARG.ob,
             lt = 0, nx = 1}
  TK[id] = t
  call('SADD', key('cust', t.cust), id)
  call('SADD', key('tasks'), id)
  local detail = {ch = t.ch, grp = t.grp, prio = t.prio, rules = ARG.why or {},
                  attrs = ARG.attrs or {}}
  if t.sk ~= '' then detail.sk = t.sk end
  if t.ob then detail.ob = t.ob end
  note(t, 'enqueued', last, detail)
  requeue(t)
end)
