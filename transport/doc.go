// Package transport carries node-to-node traffic: the raft stream layer
// (TCP with a mutual challenge–response handshake, so only nodes holding the
// admin token can speak raft to a node) and LeaderClient, the HTTP calls a follower makes to
// forward writes to the leader.
package transport
