"""activation/targets"""
