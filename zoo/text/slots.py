"""Delexicalization of meaning representations (`key : value | key : value`), in Python and
in TensorFlow string ops for served graphs.

Data-to-text systems copy names they have never seen badly: a model trained on a few hundred
restaurants writes a memorized name for a new one. Delexicalization (as in E2E's TGen)
replaces the values of chosen attributes by placeholders `<key>` in the input and in the
target before training; generation then writes the placeholder, and the input's value is put
back. Only the `key : value | ...` form is handled (E2E's `key[value]` form is left as is).

Example:
    >>> mr = "name : The Mill | Type : pub | near : Café Rouge"
    >>> delexicalize(mr, ("name", "near"))
    'name : <name> | Type : pub | near : <near>'
    >>> delexicalize_target(mr, "The Mill is a pub near Café Rouge .", ("name", "near"))
    '<name> is a pub near <near> .'
    >>> relexicalize(mr, "<name> is near <near> .", ("name", "near"))
    'The Mill is near Café Rouge .'
"""

import re

import tensorflow as tf


def placeholder(key):
    return f"<{key}>"


def _value_pattern(key):
    # The value of `key` in "a : x | key : value | b : y", without surrounding spaces.
    return r"(?:^|\|)\s*" + re.escape(key) + r"\s*:\s*([^|]*?)\s*(?:\||$)"


def values(mr, keys):
    """{key: value} of the `keys` present in the meaning representation `mr`."""
    found = {}
    for key in keys:
        match = re.search(_value_pattern(key), mr)
        if match and match.group(1):
            found[key] = match.group(1)
    return found


def delexicalize(mr, keys):
    """`mr` with the values of `keys` replaced by their placeholders."""
    for key in keys:
        mr = re.sub(r"((?:^|\|)\s*" + re.escape(key) + r"\s*:\s*)[^|]*?(\s*(?:\||$))",
                    lambda m, key=key: m.group(1) + placeholder(key) + m.group(2), mr)
    return mr


def delexicalize_target(mr, target, keys):
    """`target` with the input's values of `keys` replaced by their placeholders (longest
    value first, so a name inside another is not cut)."""
    found = values(mr, keys)
    for key, value in sorted(found.items(), key=lambda kv: -len(kv[1])):
        target = target.replace(value, placeholder(key))
    return target


def relexicalize(mr, output, keys):
    """`output` with each placeholder replaced by the input's value of its key."""
    for key, value in values(mr, keys).items():
        output = output.replace(placeholder(key), value)
    return output


# The same in the graph (TF Serving runs these; TFLite has no regex kernels).
def _tf_value(mr, key):
    """[B] strings: the value of `key` in each `mr` ("" where absent)."""
    pattern = r"^(?:.*\|)?\s*" + re.escape(key) + r"\s*:\s*([^|]*?)\s*(?:\|.*)?$"
    present = tf.strings.regex_full_match(mr, pattern)
    return tf.where(present, tf.strings.regex_replace(mr, pattern, r"\1"), "")


def tf_delexicalize(mr, keys):
    """`delexicalize` of a [B] string tensor."""
    for key in keys:
        mr = tf.strings.regex_replace(mr, r"((?:^|\|)\s*" + re.escape(key) + r"\s*:\s*)[^|]*?(\s*(?:\||$))",
                                      r"\1" + placeholder(key).replace("\\", "\\\\") + r"\2")
    return mr


def tf_relexicalize(mr, outputs, keys):
    """`relexicalize` of [B] string tensors, row by row (each row has its own values)."""
    found = tf.stack([_tf_value(mr, key) for key in keys], axis=1)  # [B, keys]

    def one(row):
        output, row_values = row
        for i, key in enumerate(keys):
            # A value is a literal: escape the rewrite's backslashes (RE2's \\1 syntax).
            value = tf.strings.regex_replace(row_values[i], r"\\", r"\\\\")
            output = tf.where(tf.strings.length(row_values[i]) > 0,
                              tf.strings.regex_replace(output, re.escape(placeholder(key)), value), output)
        return output

    return tf.map_fn(one, (outputs, found), fn_output_signature=tf.string)
