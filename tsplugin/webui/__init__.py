"""Time series in LLaMA-Factory's web UIs (`llamafactory-cli webchat`, `llamafactory-cli webui`).

Installed by hooks in `tsplugin.llamafactory.hooks` (no fork, no wrapper command):
`series_input` (CSV uploads, read as tsconvert reads them), `conversation` (series in the chat
state), `plots`, `chat_panel` (the chat box's series panel and streaming), `train_tab` (templates,
datasets and the dataset preview).
"""
