%% The cloudy experiment in Erlang/OTP, for benchmarks/vs_erlang.py: the same models
%% (ring, pipelined, stream) with the same guarantees, written as an Erlang programmer
%% would, so that cloudy's figures have a reference run in the same sitting.
%%
%% A master node starts N slave nodes (each its own OS process, `peer`, distributed
%% Erlang over TCP on 127.0.0.1) and one slave process on each, in ring order.
%%
%% Delivery, as in cloudy: every message is broadcast to every slave; a receiver
%% confirms it to its sender, cumulatively ("I hold every message of yours up to
%% number X": distributed Erlang delivers a pair's messages in order); a sender
%% approves its message once every recipient confirmed it, and tells them so,
%% cumulatively ("every message of mine up to Y is approved"). Confirmations and
%% approvals ride on the next broadcast, and go as acks of their own when a slave has
%% nothing to broadcast (in grace, or a stream slave held back by its window).
%% At the end the master takes A = the least approved prefix over the slaves (every
%% index 1..A approved there), and each slave sums i * m_i for i = 1..A in index order;
%% the run agrees when every slave printed the same sum.
%%
%% Models: ring (one token: a slave that receives index i from its left neighbour
%% broadcasts i + 1), pipelined K (K tokens: i + K), stream W (every slave generates
%% all the time, slave k of n the indices k+1, k+1+n, ..., in batches of up to 4096,
%% at most W messages ahead of its approvals and two batches ahead of the slowest).
%%
%% Run by vs_erlang.py:  erl -noshell -pa DIR -name master@127.0.0.1 -setcookie C
%%   -eval 'cloudy_ring:main(["ring", "4", "1", "2.0", "1.0"])'
%% prints one line: "erlang MODEL: slaves=N agreed=A msgs/s=R agree=true".
%% `spawn_bench(N)` spawns N processes that each wait in receive and prints
%% "erlang spawn: N processes, R spawns/s, B bytes each (RSS), P bytes each (VM)".

-module(cloudy_ring).
-export([main/1, slave/0, spawn_main/1]).

-define(BATCH, 4096).

%% --- the master -------------------------------------------------------------------

main([Model, Slaves, Param, SendFor, WaitFor]) ->
    N = list_to_integer(Slaves),
    P = list_to_integer(Param),
    Send = round(list_to_float(SendFor) * 1000),
    Wait = round(list_to_float(WaitFor) * 1000),
    Dir = filename:dirname(code:which(?MODULE)),
    Cookie = atom_to_list(erlang:get_cookie()),
    Peers = [start_peer(I, Dir, Cookie) || I <- lists:seq(1, N)],
    Nodes = lists:sort([Node || {_, Node} <- Peers]),
    Pids = list_to_tuple([spawn(Node, ?MODULE, slave, []) || Node <- Nodes]),
    Me = self(),
    [element(I, Pids) ! {init, Me, Pids, I, list_to_atom(Model), P}
     || I <- lists:seq(1, N)],
    [receive {ready, I} -> ok end || I <- lists:seq(1, N)],
    [element(I, Pids) ! go || I <- lists:seq(1, N)],
    timer:sleep(Send),
    [element(I, Pids) ! grace || I <- lists:seq(1, N)],
    timer:sleep(Wait),
    [element(I, Pids) ! stop || I <- lists:seq(1, N)],
    Prefixes = [receive {prefix, I, Pre} -> Pre end || I <- lists:seq(1, N)],
    A = lists:min(Prefixes),
    [element(I, Pids) ! {cut, A} || I <- lists:seq(1, N)],
    Sums = [receive {result, I, S} -> S end || I <- lists:seq(1, N)],
    Agree = lists:usort(Sums) =:= [hd(Sums)],
    io:format("erlang ~s: slaves=~b agreed=~b msgs/s=~.1f agree=~p~n",
              [Model, N, A, A / (Send / 1000), Agree]),
    [peer:stop(Ref) || {Ref, _} <- Peers],
    halt(0).

start_peer(I, Dir, Cookie) ->
    {ok, Ref, Node} = peer:start_link(#{
        name => "cloudy_slave" ++ integer_to_list(I) ++ "_" ++ os:getpid(),
        host => "127.0.0.1",
        longnames => true,
        args => ["-setcookie", Cookie, "-pa", Dir, "-start_epmd", "false",
                 "-kernel", "prevent_overlapping_partitions", "false",
                 "-kernel", "inet_dist_use_interface", "{127,0,0,1}"]}),
    {Ref, Node}.

%% --- a slave ----------------------------------------------------------------------

-record(s, {
    master, pids, n, me, model, param, phase = wait,
    seq = 0,            % my broadcasts (or stream messages) so far
    recv,               % tuple: the highest number received from each sender
    conf,               % tuple: the highest of mine each recipient confirmed
    approved = 0,       % mine approved up to
    theirs,             % tuple: each sender's approval mark as I last heard it
    mine = queue:new(), % my unapproved: {Seq, Index}
    pending,            % tuple of queues: each sender's unapproved {Seq, Index}
    vals,               % ets: index -> value (ring, pipelined)
    oks,                % ets: approved indices (ring, pipelined)
    batches,            % tuple: each sender's batches of values, newest first (stream)
    next_index = 0,     % stream: my next index
    sent_state          % what my last broadcast or ack told: {Recv, Approved}
}).

slave() ->
    receive {init, Master, Pids, Me, Model, Param} -> ok end,
    N = tuple_size(Pids),
    Zeros = erlang:make_tuple(N, 0),
    S = #s{master = Master, pids = Pids, n = N, me = Me, model = Model,
           param = Param, recv = Zeros, conf = Zeros, theirs = Zeros,
           pending = erlang:make_tuple(N, queue:new()),
           vals = ets:new(vals, [set]), oks = ets:new(oks, [set]),
           batches = erlang:make_tuple(N, []), next_index = Me,
           sent_state = {Zeros, 0}},
    rand:seed(exsss, {Me, 17, 42}),
    Master ! {ready, Me},
    receive go -> ok end,
    S1 = S#s{phase = send},
    S2 = case Model of
             ring when Me =:= 1 -> broadcast(S1, [1]);
             pipelined when Me =:= 1 -> broadcast(S1, lists:seq(1, Param));
             stream -> generate(S1);
             _ -> S1
         end,
    loop(S2).

loop(S) ->
    receive Msg -> S1 = handle(Msg, S) end,
    S2 = drain(S1),
    case S2#s.phase of
        done -> ok;
        _ -> loop(after_turn(S2))
    end.

drain(S = #s{phase = done}) -> S;
drain(S) ->
    receive Msg -> drain(handle(Msg, S)) after 0 -> S end.

%% What a slave does after taking every message waiting: generate (stream), else
%% send what it confirms and approves if no broadcast told it yet.
after_turn(S = #s{model = stream, phase = send}) -> ack_if_changed(generate(S));
after_turn(S) -> ack_if_changed(S).

ack_if_changed(S = #s{recv = R, approved = A, sent_state = {R, A}}) -> S;
ack_if_changed(S = #s{model = M, phase = send}) when M =/= stream -> S; % rides on tokens
ack_if_changed(S = #s{recv = R, approved = A, me = Me}) ->
    send_all(S, {ack, Me, R, A}),
    S#s{sent_state = {R, A}}.

handle({bcast, From, Seq, Index, Value, R, A}, S) ->
    S1 = receive_one(S, From, Seq, Index, Value),
    S2 = confirmed(approved_by(S1, From, A), From, element(S1#s.me, R)),
    token(S2, From, Index);
handle({batch, From, First, Values, R, A}, S) ->
    S1 = receive_batch(S, From, First, Values),
    confirmed(approved_by(S1, From, A), From, element(S1#s.me, R));
handle({ack, From, R, A}, S) ->
    confirmed(approved_by(S, From, A), From, element(S#s.me, R));
handle(grace, S) -> S#s{phase = grace};
handle(stop, S) ->
    S#s.master ! {prefix, S#s.me, prefix(S)},
    S#s{phase = stopped};
handle({cut, A}, S) ->
    S#s.master ! {result, S#s.me, sum(S, A)},
    S#s{phase = done}.

%% The token: the next slave after the sender answers with the next index.
token(S = #s{phase = send, model = M, n = N, me = Me}, From, Index) when M =/= stream ->
    case From rem N + 1 of
        Me -> broadcast(S, [Index + step(S)]);
        _ -> S
    end;
token(S, _, _) -> S.

step(#s{model = ring}) -> 1;
step(#s{param = K}) -> K.

broadcast(S, Indices) ->
    lists:foldl(fun(Index, Acc) -> broadcast_one(Acc, Index) end, S, Indices).

broadcast_one(S = #s{me = Me, seq = Seq0}, Index) ->
    Seq = Seq0 + 1,
    Value = rand:uniform(),
    ets:insert(S#s.vals, {Index, Value}),
    R = setelement(Me, S#s.recv, Seq),
    S1 = S#s{seq = Seq, recv = R, mine = queue:in({Seq, Index}, S#s.mine)},
    send_all(S1, {bcast, Me, Seq, Index, Value, R, S1#s.approved}),
    S2 = S1#s{sent_state = {R, S1#s.approved}},
    case S2#s.n of 1 -> confirmed(S2, Me, Seq); _ -> S2 end.

send_all(#s{pids = Pids, me = Me, n = N}, Msg) ->
    [element(I, Pids) ! Msg || I <- lists:seq(1, N), I =/= Me],
    ok.

receive_one(S, From, Seq, Index, Value) ->
    ets:insert(S#s.vals, {Index, Value}),
    Q = queue:in({Seq, Index}, element(From, S#s.pending)),
    S#s{recv = setelement(From, S#s.recv, Seq), pending = setelement(From, S#s.pending, Q)}.

%% A recipient's confirmation of my messages up to C: approve what all confirmed.
confirmed(S = #s{me = Me}, From, C) ->
    Conf = setelement(From, S#s.conf, max(C, element(From, S#s.conf))),
    Low = lists:min([element(I, Conf) || I <- lists:seq(1, S#s.n), I =/= Me] ++ [S#s.seq]),
    approve_mine(S#s{conf = Conf}, Low).

approve_mine(S = #s{model = stream}, Low) -> S#s{approved = max(S#s.approved, Low)};
approve_mine(S, Low) ->
    case queue:peek(S#s.mine) of
        {value, {Seq, Index}} when Seq =< Low ->
            ets:insert(S#s.oks, {Index}),
            approve_mine(S#s{mine = queue:drop(S#s.mine), approved = Seq}, Low);
        _ -> S
    end.

%% A sender's approval mark: its messages up to A enter my result.
approved_by(S = #s{model = stream}, From, A) ->
    S#s{theirs = setelement(From, S#s.theirs, max(A, element(From, S#s.theirs)))};
approved_by(S, From, A) ->
    Q = take_approved(element(From, S#s.pending), A, S#s.oks),
    S#s{pending = setelement(From, S#s.pending, Q)}.

take_approved(Q, A, Oks) ->
    case queue:peek(Q) of
        {value, {Seq, Index}} when Seq =< A ->
            ets:insert(Oks, {Index}),
            take_approved(queue:drop(Q), A, Oks);
        _ -> Q
    end.

%% --- stream -----------------------------------------------------------------------

generate(S = #s{param = W, seq = Seq, approved = A, recv = R, n = N, me = Me}) ->
    Slowest = lists:min([element(I, R) || I <- lists:seq(1, N), I =/= Me] ++ [Seq]),
    Room = lists:min([?BATCH, W - (Seq - A), Slowest + 2 * ?BATCH - Seq]),
    case Room > 0 of
        false -> S;
        true ->
            Values = [rand:uniform() || _ <- lists:seq(1, Room)],
            First = Seq + 1,
            Last = Seq + Room,
            R1 = setelement(Me, R, Last),
            B = setelement(Me, S#s.batches, [Values | element(Me, S#s.batches)]),
            S1 = S#s{seq = Last, recv = R1, batches = B},
            send_all(S1, {batch, Me, First, Values, R1, A}),
            S2 = S1#s{sent_state = {R1, A}},
            case N of 1 -> confirmed(S2, Me, Last); _ -> S2 end
    end.

receive_batch(S, From, First, Values) ->
    Last = First + length(Values) - 1,
    B = setelement(From, S#s.batches, [Values | element(From, S#s.batches)]),
    S#s{recv = setelement(From, S#s.recv, Last), batches = B}.

%% --- the end ----------------------------------------------------------------------

%% Every index 1..P approved here.
prefix(S = #s{model = stream, n = N, me = Me}) ->
    Marks = [case I of Me -> S#s.approved; _ -> element(I, S#s.theirs) end
             || I <- lists:seq(1, N)],
    lists:min([I + A * N || {I, A} <- lists:zip(lists:seq(1, N), Marks)]) - 1;
prefix(S) -> count_up(S#s.oks, 1).

count_up(Oks, I) ->
    case ets:member(Oks, I) of true -> count_up(Oks, I + 1); false -> I - 1 end.

sum(S = #s{model = stream, n = N}, A) ->
    Arrays = list_to_tuple([list_to_tuple(lists:append(lists:reverse(element(I, S#s.batches))))
                            || I <- lists:seq(1, N)]),
    sum_stream(Arrays, N, 1, A, 0.0);
sum(S, A) -> sum_ring(S#s.vals, 1, A, 0.0).

sum_stream(_, _, I, A, Acc) when I > A -> Acc;
sum_stream(Arrays, N, I, A, Acc) ->
    V = element((I - 1) div N + 1, element((I - 1) rem N + 1, Arrays)),
    sum_stream(Arrays, N, I + 1, A, Acc + I * V).

sum_ring(_, I, A, Acc) when I > A -> Acc;
sum_ring(Vals, I, A, Acc) ->
    [{_, V}] = ets:lookup(Vals, I),
    sum_ring(Vals, I + 1, A, Acc + I * V).

%% --- spawn ------------------------------------------------------------------------

spawn_main([Count]) ->
    N = list_to_integer(Count),
    Me = self(),
    erlang:garbage_collect(),
    Rss0 = rss(),
    Vm0 = erlang:memory(processes),
    T0 = erlang:monotonic_time(),
    Pids = [spawn(fun() -> receive stop -> Me ! stopped end end) || _ <- lists:seq(1, N)],
    wait_waiting(lists:last(Pids)),
    T1 = erlang:monotonic_time(),
    Rss1 = rss(),
    Vm1 = erlang:memory(processes),
    Secs = erlang:convert_time_unit(T1 - T0, native, microsecond) / 1.0e6,
    [P ! stop || P <- Pids],
    [receive stopped -> ok end || _ <- Pids],
    io:format("erlang spawn: ~b processes, ~b spawns/s, ~b bytes each (RSS), "
              "~b bytes each (VM)~n",
              [N, round(N / Secs), round((Rss1 - Rss0) / N), round((Vm1 - Vm0) / N)]),
    halt(0).

wait_waiting(Pid) ->
    case erlang:process_info(Pid, status) of
        {status, waiting} -> ok;
        _ -> erlang:yield(), wait_waiting(Pid)
    end.

rss() ->
    {ok, Text} = file:read_file("/proc/" ++ os:getpid() ++ "/status"),
    [Line] = [L || L <- binary:split(Text, <<"\n">>, [global]),
                   binary:match(L, <<"VmRSS:">>) =/= nomatch],
    [_, Kb | _] = binary:split(Line, [<<" ">>, <<"\t">>], [global, trim_all]),
    binary_to_integer(Kb) * 1024.
