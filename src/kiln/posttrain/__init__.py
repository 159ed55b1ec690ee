"""kiln.posttrain: turning a pretrained model into one that follows instructions.

`kiln sft` (supervised fine-tuning on chat conversations, loss on the assistant's tokens only, packed windows
whose documents do not see each other) runs on the pretraining `Trainer`, so it checkpoints, resumes exactly,
logs and parallelises the same way. `kiln chat-tokens` adds the chat template's tokens to a base model that
lacks them.
"""
