"""tertiary.data"""
