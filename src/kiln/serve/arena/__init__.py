"""The playground's arena: two models answer one prompt blind, a person votes, the votes become a leaderboard
(Bradley-Terry ratings) and DPO pairs that `kiln dpo` reads.

`store` keeps battles and votes (votes.jsonl, appended atomically), `ratings` fits the leaderboard, `export`
turns votes into preference pairs, `battle` generates both answers through the server's own engine.
"""
