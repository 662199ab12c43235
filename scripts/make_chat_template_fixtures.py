#!/usr/bin/env python3
"""Renders real Hugging Face chat templates with transformers' own machinery and writes
Tests/SwiftletTests/Fixtures/chat_templates/cases.json for ChatTemplateTests.swift.

Run with the fixtures venv (transformers 5.24, jinja2 3.1.6):
    python scripts/make_chat_template_fixtures.py

Every case is rendered the way `PreTrainedTokenizerBase.apply_chat_template(tokenize=False)` does it:
messages go through `_normalize_chat_messages` (keys whose value is None dropped), then
`render_jinja_template(conversations=[...], tools=..., add_generation_prompt=..., **special_tokens, **kwargs)`,
which calls the ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) template with
messages, tools (None unless given), documents (None), add_generation_prompt and the keyword arguments.
`strftime_now` reads `datetime.now()`; it is pinned to FIXED_NOW (a naive datetime, read as UTC by the
Swift test). The template sources below are the real texts of the named public models (no Hub access
here: they are written out by hand from the models' tokenizer_config.json).
"""
import datetime as _dt
import json
import os
import sys

import jinja2
import transformers
import transformers.utils.chat_template_utils as ctu

FIXED_NOW = _dt.datetime(2025, 3, 7, 14, 5, 9)


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


ctu.datetime = _FixedDatetime  # strftime_now() closes over the module global `datetime`

# ---------------------------------------------------------------------------------------------
# Templates. Python raw strings keep Jinja's own backslash escapes ('\n' inside a Jinja string
# literal) exactly as they appear in the decoded tokenizer_config.json.
# ---------------------------------------------------------------------------------------------

# meta-llama/Llama-2-7b-chat-hf
LLAMA2 = r"""{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"""

# meta-llama/Meta-Llama-3-8B-Instruct (its JSON holds real newlines inside the string literals)
LLAMA3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"

# meta-llama/Llama-3.1-8B-Instruct
LLAMA31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# meta-llama/Llama-3.2-1B-Instruct: the 3.1 template with strftime_now() and without builtin tools
LLAMA32 = LLAMA31.replace(
    """{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}""",
    """{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}""").replace(
    """{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}""",
    """{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}""").replace(
    """        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}""",
    """        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}""")
assert "strftime_now" in LLAMA32 and "builtin_tools" not in LLAMA32

# mistralai/Mistral-7B-Instruct-v0.1
MISTRAL_V01 = r"""{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"""

# mistralai/Mistral-7B-Instruct-v0.2 (current revision, with the optional system message)
MISTRAL_V02 = r"""{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

# mistralai/Mistral-7B-Instruct-v0.3 (tools)
MISTRAL_V03 = r"""{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.first and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

# teknium/OpenHermes-2.5-Mistral-7B (plain ChatML)
CHATML = r"""{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"""

# Qwen/Qwen2-7B-Instruct (ChatML with a default system message)
QWEN2 = r"""{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
You are a helpful assistant.<|im_end|>
' }}{% endif %}{{'<|im_start|>' + message['role'] + '
' + message['content'] + '<|im_end|>' + '
'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant
' }}{% endif %}"""

# Qwen/Qwen2.5-7B-Instruct (ChatML with tools)
QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# 01-ai/Yi-34B-Chat (ChatML variant)
# Qwen/Qwen3-8B (thinking mode; written out from its tokenizer_config.json as remembered, not copied from the
# Hub: what the cases test is that Swiftlet's interpreter renders this text exactly as transformers does)
QWEN3 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""

# microsoft/Phi-3-mini-4k-instruct (as remembered; see QWEN3's note)
PHI3 = r"""{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>
' + message['content'] + '<|end|>
'}}{% elif message['role'] == 'user' %}{{'<|user|>
' + message['content'] + '<|end|>
'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>
' + message['content'] + '<|end|>
'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>
' }}{% else %}{{ eos_token }}{% endif %}"""

YI = r"""{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% endif %}{% if system_message is defined %}{{ system_message }}{% endif %}{% for message in messages %}{% set content = message['content'] %}{% if message['role'] == 'user' %}{{ '<|im_start|>user\n' + content + '<|im_end|>\n<|im_start|>assistant\n' }}{% elif message['role'] == 'assistant' %}{{ content + '<|im_end|>' + '\n' }}{% endif %}{% endfor %}"""

# HuggingFaceH4/zephyr-7b-beta (same text as TinyLlama/TinyLlama-1.1B-Chat-v1.0); multi-line: trim_blocks matters
ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

# Alpaca: chujiezheng/chat_templates alpaca.jinja, whitespace-stripped as its README says to use it
# (tatsu-lab/stanford_alpaca ships no chat_template)
ALPACA = r"""{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'].strip() + '\n\n' %}{% else %}{% set loop_messages = messages %}{% set system_message = '' %}{% endif %}{{ bos_token + system_message }}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'].strip() + '\n\n' }}{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + message['content'].strip() + eos_token + '\n\n' }}{% endif %}{% if loop.last and message['role'] == 'user' and add_generation_prompt %}{{ '### Response:\n' }}{% endif %}{% endfor %}"""

# Vicuna v1.5: chujiezheng/chat_templates vicuna.jinja, whitespace-stripped (lmsys ships no chat_template)
VICUNA = r"""{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'].strip() + '\n\n' %}{% else %}{% set loop_messages = messages %}{% set system_message = 'A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user\'s questions.\n\n' %}{% endif %}{{ bos_token + system_message }}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ 'USER: ' + message['content'].strip() + '\n' }}{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT: ' + message['content'].strip() + eos_token + '\n' }}{% endif %}{% if loop.last and message['role'] == 'user' and add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}{% endfor %}"""

# microsoft/phi-2 community template (indented blocks: lstrip_blocks + trim_blocks matter)
PHI2_INDENTED = r"""{% if messages[0]['role'] == 'system' %}
    {% set loop_messages = messages[1:] %}
    {% set system_message = messages[0]['content']  + ' ' %}
{% else %}
    {% set loop_messages = messages %}
    {% set system_message = '' %}
{% endif %}
{% for message in loop_messages %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    {% if loop.index0 == 0 %}
        {% set content = system_message + message['content'] %}
    {% else %}
        {% set content = message['content'] %}
    {% endif %}
    {{ (message['role'] | title) + ': ' + content + '\n' }}
{% endfor %}
{% if add_generation_prompt %}
    {{ 'Assistant:' }}
{% endif %}"""

# google/gemma-2-9b-it (as remembered; see QWEN3's note): no system role, "model" for the assistant
GEMMA2 = r"""{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"""

# google/gemma-3-1b-it (as remembered): the system message is prefixed to the first user turn
GEMMA3 = r"""{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

TEMPLATES = {
    # name: (source, bos, eos, model)
    "llama-2": (LLAMA2, "<s>", "</s>", "meta-llama/Llama-2-7b-chat-hf"),
    "llama-3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "meta-llama/Meta-Llama-3-8B-Instruct"),
    "llama-3.1": (LLAMA31, "<|begin_of_text|>", "<|eot_id|>", "meta-llama/Llama-3.1-8B-Instruct"),
    "llama-3.2": (LLAMA32, "<|begin_of_text|>", "<|eot_id|>", "meta-llama/Llama-3.2-1B-Instruct"),
    "mistral": (MISTRAL_V01, "<s>", "</s>", "mistralai/Mistral-7B-Instruct-v0.1"),
    "mistral-v0.2": (MISTRAL_V02, "<s>", "</s>", "mistralai/Mistral-7B-Instruct-v0.2"),
    "mistral-v0.3": (MISTRAL_V03, "<s>", "</s>", "mistralai/Mistral-7B-Instruct-v0.3"),
    "chatml": (CHATML, "<s>", "<|im_end|>", "teknium/OpenHermes-2.5-Mistral-7B"),
    "qwen2": (QWEN2, None, "<|im_end|>", "Qwen/Qwen2-7B-Instruct"),
    "qwen2.5": (QWEN25, None, "<|im_end|>", "Qwen/Qwen2.5-7B-Instruct"),
    "qwen3": (QWEN3, None, "<|im_end|>", "Qwen/Qwen3-8B (as remembered)"),
    "phi-3": (PHI3, "<s>", "<|endoftext|>", "microsoft/Phi-3-mini-4k-instruct (as remembered)"),
    "gemma": (GEMMA2, "<bos>", "<eos>", "google/gemma-2-9b-it (as remembered)"),
    "gemma-3": (GEMMA3, "<bos>", "<eos>", "google/gemma-3-1b-it (as remembered)"),
    "yi": (YI, "<|startoftext|>", "<|im_end|>", "01-ai/Yi-34B-Chat"),
    "zephyr": (ZEPHYR, "<s>", "</s>", "HuggingFaceH4/zephyr-7b-beta"),
    "alpaca": (ALPACA, "<s>", "</s>", "chujiezheng/chat_templates alpaca.jinja"),
    "vicuna": (VICUNA, "<s>", "</s>", "chujiezheng/chat_templates vicuna.jinja"),
    "phi-2-indented": (PHI2_INDENTED, None, "<|endoftext|>", "microsoft/phi-2 community template"),
}

# ---------------------------------------------------------------------------------------------
# Conversations
# ---------------------------------------------------------------------------------------------
U, A, S = "user", "assistant", "system"


def m(role, content, **extra):
    d = {"role": role, "content": content}
    d.update(extra)
    return d


CONVERSATIONS = {
    "single": [m(U, "Hello!")],
    "system_single": [m(S, "You are a helpful assistant."), m(U, "What is 2+2?")],
    "multi": [m(U, "Hi there"), m(A, "Hello! How can I help?"), m(U, "Tell me a joke.")],
    "system_multi_assistant_last": [
        m(S, "Be brief."), m(U, "Name a color."), m(A, "Blue."), m(U, "Another?"), m(A, "Green."),
    ],
    "whitespace": [
        m(S, "  System with spaces.\n"), m(U, "  padded question \n\n"), m(A, "\n answer with trailing space  "),
        m(U, "line one\nline two\n\tindented"),
    ],
    "unicode": [m(U, "Grüße! 你好 🌍 — café \"quoted\" \\ back"), m(A, "¡Hola! こんにちは ✓"), m(U, "Ça va? ñ")],
    "not_alternating": [m(U, "first"), m(U, "second")],
    "assistant_first": [m(A, "I speak first."), m(U, "ok")],
    "empty_content": [m(U, ""), m(A, ""), m(U, "x")],
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
                "detailed": {"type": "boolean", "default": False, "nullable": None},
            },
            "required": ["location"],
        },
        "return": {"type": "string"},
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone — ünïcödé",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}

# (template, case name, messages, kwargs)
EXTRA_CASES = []
for tpl in ("llama-3.1", "llama-3.2"):
    EXTRA_CASES += [
        (tpl, "tools_in_user_message", [m(U, "  What's the weather in Paris? ")], {"tools": [WEATHER_TOOL, TIME_TOOL]}),
        (tpl, "tools_in_system", [m(S, "You are a bot."), m(U, "Weather in Paris?")],
         {"tools": [WEATHER_TOOL], "tools_in_user_message": False}),
        (tpl, "tool_call_roundtrip", [
            m(U, "Weather in Paris?"),
            {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                "name": "get_current_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}}]},
            m("tool", "22.5"),
            m("tool", {"temperature": 22.5, "ok": True}),
        ], {"tools": [WEATHER_TOOL], "tools_in_user_message": False}),
        (tpl, "two_tool_calls_error", [
            m(U, "x"),
            {"role": "assistant", "tool_calls": [
                {"type": "function", "function": {"name": "a", "arguments": {}}},
                {"type": "function", "function": {"name": "b", "arguments": {}}}]},
        ], {}),
        (tpl, "tools_no_user_error", [m(S, "sys only")], {"tools": [WEATHER_TOOL]}),
        (tpl, "date_string", [m(U, "What day is it?")], {"date_string": "01 Jan 2030"}),
    ]
EXTRA_CASES += [
    ("llama-3.1", "builtin_tools", [
        m(S, "Sys"), m(U, "Search for swift"),
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {
            "name": "brave_search", "arguments": {"query": "swift lang", "n": "3"}}}]},
        m("ipython", "results..."),
    ], {"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"]}),
    ("qwen2.5", "tools", [m(U, "What's the weather in Paris and the time in Tokyo?")], {"tools": [WEATHER_TOOL, TIME_TOOL]}),
    ("qwen2.5", "tools_with_system", [m(S, "You are a weather bot."), m(U, "Weather?")], {"tools": [TIME_TOOL]}),
    ("qwen2.5", "tool_call_roundtrip", [
        m(S, "Sys prompt"),
        m(U, "Weather in Paris and Tokyo?"),
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"type": "function", "function": {"name": "get_current_weather", "arguments": {"location": "Paris"}}},
            {"type": "function", "function": {"name": "get_current_weather", "arguments": {"location": "Tokyo", "days": 2}}}]},
        m("tool", "{\"temp\": 20}"),
        m("tool", "{\"temp\": 25}"),
        m(A, "Paris 20, Tokyo 25."),
        m("tool", "late tool"),
    ], {"tools": [WEATHER_TOOL]}),
    ("qwen2.5", "tool_call_no_content", [
        m(U, "Time?"),
        {"role": "assistant", "content": "", "tool_calls": [{"name": "get_time", "arguments": {"tz": "UTC"}}]},
        m("tool", "12:00"),
    ], {}),
    ("qwen3", "thinking_history", [
        m(U, "2+2?"), m(A, "<think>\nadd them\n</think>\n\n4"), m(U, "3+3?"),
        m(A, "6", reasoning_content="easy"),
    ], {}),
    ("qwen3", "no_thinking", [m(U, "Hi")], {"enable_thinking": False}),
    ("qwen3", "tools", [m(S, "Weather bot."), m(U, "Weather in Paris?"),
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "get_current_weather", "arguments": {"location": "Paris"}}}]},
        m("tool", "{\"temp\": 20}"),
    ], {"tools": [WEATHER_TOOL]}),
    ("mistral-v0.3", "tools", [
        m(S, "Be precise."), m(U, "Hi"), m(A, "Hello"), m(U, "Weather in Paris?"),
        {"role": "assistant", "tool_calls": [{"id": "abcdef123", "type": "function", "function": {
            "name": "get_current_weather", "arguments": {"location": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "abcdef123", "content": "{\"temp\": 20}"},
        m(A, " It is 20 degrees. "),
    ], {"tools": [WEATHER_TOOL, TIME_TOOL]}),
    ("mistral-v0.3", "bad_tool_call_id", [
        m(U, "Weather?"),
        {"role": "assistant", "tool_calls": [{"id": "short", "type": "function", "function": {
            "name": "get_current_weather", "arguments": {"location": "Paris"}}}]},
    ], {}),
    ("mistral-v0.3", "tool_result_mapping", [
        m(U, "Weather?"),
        {"role": "assistant", "tool_calls": [{"id": "123456789", "type": "function", "function": {
            "name": "f", "arguments": {"a": [1, 2.5, None, True]}}}]},
        {"role": "tool", "tool_call_id": "123456789", "content": {"content": "inner"}},
    ], {}),
]


def render(source, messages, add_generation_prompt, bos, eos, kwargs):
    chat = ctu._normalize_chat_messages(messages)
    kw = {}
    if bos is not None:
        kw["bos_token"] = bos
    if eos is not None:
        kw["eos_token"] = eos
    kw.update(kwargs)
    tools = kw.pop("tools", None)
    try:
        out, _ = ctu.render_jinja_template(
            conversations=[chat], tools=tools, chat_template=source,
            add_generation_prompt=add_generation_prompt, **kw)
        return {"expected": out[0]}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e), "error_kind": type(e).__name__}
    except Exception as e:  # TypeError from Undefined + str etc.
        return {"error": str(e), "error_kind": type(e).__name__}


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = os.path.join(root, "Tests", "SwiftletTests", "Fixtures", "chat_templates")
    os.makedirs(out_dir, exist_ok=True)
    cases = []
    for name, (source, bos, eos, model) in TEMPLATES.items():
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (False, True):
                case = {"template": name, "name": f"{conv_name}/agp={agp}", "messages": messages,
                        "add_generation_prompt": agp, "bos_token": bos, "eos_token": eos, "kwargs": {}}
                case.update(render(source, messages, agp, bos, eos, {}))
                cases.append(case)
    for name, conv_name, messages, kwargs in EXTRA_CASES:
        source, bos, eos, model = TEMPLATES[name]
        for agp in (False, True):
            case = {"template": name, "name": f"{conv_name}/agp={agp}", "messages": messages,
                    "add_generation_prompt": agp, "bos_token": bos, "eos_token": eos, "kwargs": kwargs}
            case.update(render(source, messages, agp, bos, eos, kwargs))
            cases.append(case)
    doc = {
        "generator": "scripts/make_chat_template_fixtures.py",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "now": FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S"),
        "templates": {name: {"source": s, "model": model} for name, (s, _, _, model) in TEMPLATES.items()},
        "cases": cases,
    }
    path = os.path.join(out_dir, "cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum(1 for c in cases if "error" in c)
    print(f"wrote {path}: {len(cases)} cases ({n_err} errors), {os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
